"""OverFeat "fast" on ILSVRC2012 CLS-LOC, the paper's recipe (section 3.1, spec section 3).

SGD momentum 0.6, coupled L2 weight decay 1e-5, lr 5e-2 at batch 128 halved after epochs 30, 50, 60, 70, 80,
90 epochs, dropout 0.5, random 231x231 crops and flips of images whose smaller side is 256.

  python -m overfeat_jax.main --config=experiments/configs/fast_imagenet.py --workdir=/tmp/fast
  python -m overfeat_jax.main --config=experiments/configs/fast_imagenet.py:smoke --workdir=/tmp/fast_smoke
"""

import ml_collections

from overfeat_jax.config_files import load_sibling


common = load_sibling('common', __file__)


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  c = common.base_config()
  c.model.geometry, c.crop_size = 'fast', 231
  if arg == 'smoke':  # a few steps of a narrow net on whatever ImageNet build is present
    c.model.width_divisor, c.batch_size, c.num_train_steps = 16, 16, 4
    c.eval.scales, c.eval.every_steps, c.log_every_steps = (245,), 0, 1
  elif arg:
    raise ValueError(f'unknown config argument {arg!r}; use "" or "smoke".')
  return c
