"""OverFeat "fast" on ILSVRC2012 CLS-LOC, the paper's recipe (section 3.1, spec section 3).

SGD momentum 0.6, coupled L2 weight decay 1e-5, lr 5e-2 at batch 128 halved after epochs 30, 50, 60, 70, 80,
90 epochs, dropout 0.5, random 231x231 crops and flips of images whose smaller side is 256.

  python -m overfeat_jax.main --config=experiments/configs/fast_imagenet.py --workdir=/tmp/fast
  python -m overfeat_jax.main --config=experiments/configs/fast_imagenet.py:smoke --workdir=/tmp/fast_smoke
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
  c.model.geometry, c.crop_size = 'fast', 231
  if arg == 'smoke':  # a few steps of a narrow net on whatever ImageNet build is present
    c.model.width_divisor, c.batch_size, c.num_train_steps = 16, 16, 4
    c.eval.scales, c.eval.every_steps, c.log_every_steps = (245,), 0, 1
  elif arg:
    raise ValueError(f'unknown config argument {arg!r}; use "" or "smoke".')
  return c
