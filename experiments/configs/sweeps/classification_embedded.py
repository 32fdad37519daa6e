"""Classification sweep on the embedded dataset (the CPU demo's network): Table 2's rows at 64 px.

  python -m overfeat_jax.sweep --sweep=experiments/configs/sweeps/classification_embedded.py \
      --workdir=/tmp/demo --checkpoints=/tmp/demo_seed1,/tmp/demo_seed2

Axes: the first 1, 2, 4 or 6 of the demo's evaluation scales (80, 96, ..., 160 px), coarse (16 px) vs fine (8 px)
stride, flips off/on; plus the centre crop, the paper's 10-view crops at the training size, every network
given, and their ensemble. Add a point by adding an entry to `points` (or a value to a `grid` axis).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.task = 'classification'
  c.train_config = 'overfeat_jax.configs.embedded'  # data, crop size, eval view size and scales
  c.data_from = 'workdir'  # the --workdir's config.json data if it has one; 'train_config': the above's
  c.data_name = ''  # '' = the training config's dataset
  c.eval_size = 0  # 0 = the training config's eval.resize (72)
  c.scales = ()  # () = the training config's eval.scales
  c.batch_size = 100
  c.max_examples = 0  # 0 = the whole test split (1000 images)
  c.box = ml_collections.ConfigDict()  # (localization/detection only)
  c.defaults = ml_collections.ConfigDict(dict(models='first', view='dense', num_scales=1, fine=True, flips=True))
  c.grid = ml_collections.ConfigDict(dict(num_scales=(1, 2, 4, 6), fine=(False, True), flips=(False, True)))
  c.points = ml_collections.ConfigDict({
      'centre crop': dict(view='center_crop', flips=False),
      '10 views': dict(view='ten_crop', flips=True),
      'each network': dict(models='each', num_scales=4, fine=True, flips=True),
      'each network, 10 views': dict(models='each', view='ten_crop', flips=True),
      'ensemble': dict(models='ensemble', num_scales=4, fine=True, flips=True),
      'ensemble, 10 views': dict(models='ensemble', view='ten_crop', flips=True),
  })
  return c
