"""Classification sweep on ILSVRC2012 validation: the paper's Table 2 (fast and accurate, 1-6 scales, strides).

  python -m overfeat_jax.sweep --sweep=experiments/configs/sweeps/classification_imagenet.py \
      --workdir=/runs/fast --checkpoints=/runs/accurate --output=/runs/sweeps/table2

Every network given (`--workdir` first, then `--checkpoints`) is swept over 1, 2, 4 and 6 of the paper's six
scales (the training config's eval.scales), coarse vs fine stride, with flips; plus the 10-view crops and the
ensemble of all networks (the paper's 7-model rows average 7 accurate networks).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.task = 'classification'
  c.train_config = 'overfeat_jax.configs.fast_imagenet'
  c.data_from = 'workdir'  # the --workdir's config.json data if it has one; 'train_config': the above's
  c.data_name = ''
  c.eval_size = 0  # the training config's eval.resize (256)
  c.scales = ()  # the paper's six scales (training config)
  c.batch_size = 32
  c.max_examples = 0  # 0 = all 50,000 validation images
  c.box = ml_collections.ConfigDict()
  c.defaults = ml_collections.ConfigDict(dict(models='each', view='dense', num_scales=1, fine=True, flips=True))
  c.grid = ml_collections.ConfigDict(dict(num_scales=(1, 2, 4, 6), fine=(False, True)))
  c.points = ml_collections.ConfigDict({
      '10 views': dict(view='ten_crop', flips=True),
      'ensemble': dict(models='ensemble', num_scales=6, fine=True, flips=True),
  })
  return c
