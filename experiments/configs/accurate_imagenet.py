"""OverFeat "accurate" on ILSVRC2012 CLS-LOC, the paper's recipe (section 3.1), 221x221 crops.

  python -m overfeat_jax.main --config=experiments/configs/accurate_imagenet.py --workdir=/tmp/accurate
  python -m overfeat_jax.main --config=experiments/configs/accurate_imagenet.py --config.dtype=bfloat16 \
      --config.batch_size=256 --workdir=/tmp/accurate_bf16   # lr scales to 1e-1 with the batch
"""

import ml_collections

from overfeat_jax.config_files import load_sibling


common = load_sibling('common', __file__)


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  c = common.base_config()
  c.model.geometry, c.crop_size = 'accurate', 221
  if arg == 'smoke':
    c.model.width_divisor, c.batch_size, c.num_train_steps = 16, 16, 4
    c.eval.scales, c.eval.every_steps, c.log_every_steps = (245,), 0, 1
  elif arg:
    raise ValueError(f'unknown config argument {arg!r}; use "" or "smoke".')
  return c
