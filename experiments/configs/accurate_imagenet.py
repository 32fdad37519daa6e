"""OverFeat "accurate" on ILSVRC2012 CLS-LOC, the paper's recipe (section 3.1), 221x221 crops.

  python -m overfeat_jax.main --config=experiments/configs/accurate_imagenet.py --workdir=/tmp/accurate
  python -m overfeat_jax.main --config=experiments/configs/accurate_imagenet.py --config.dtype=bfloat16 \
      --config.batch_size=256 --workdir=/tmp/accurate_bf16   # lr scales to 1e-1 with the batch
"""

import importlib.util
import os

import ml_collections


def _load_common():
  """common.py next to this file (config files are loaded by path, not as a package)."""
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'common.py')
  spec = importlib.util.spec_from_file_location('overfeat_configs_common', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


common = _load_common()


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  c = common.base_config()
  c.model.geometry, c.crop_size = 'accurate', 221
  if arg == 'smoke':
    c.model.width_divisor, c.batch_size, c.num_train_steps = 16, 16, 4
    c.eval.scales, c.eval.every_steps, c.log_every_steps = (245,), 0, 1
  elif arg:
    raise ValueError(f'unknown config argument {arg!r}; use "" or "smoke".')
  return c
