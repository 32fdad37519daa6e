"""The embedded demo's localization stage (paper section 4) on top of its classification stage.

`section(arg)` is the `config.localization` section (merged over the top-level config for that stage by
`config_files.stage_config`); `get_config(arg)` is the embedded demo (`embedded.py`, which holds this section) stopped after localization.
Regressor: single-class (the paper's competition choice), hidden widths divided like the network's (4096/8,
1024/8). Training: whole 72x72 images (no crop, random flips), each batch resized by the input pipeline to one of
4 scales (`box.train_scales`), one per step in turn (`data.preprocess.scale_of_batch`), 1,000 steps.
Inference: 4 scales (80-152 px), top-2 classes per scale, greedy merge with the 'overlap' score at t = 0.4
(chosen by the measurements in experiments/benchmarks/results/localization_detection.md).

  python -m overfeat_jax.main --config=experiments/configs/embedded_localization.py --workdir=/tmp/loc
"""

import ml_collections

from overfeat_jax.config_files import load_sibling


def box_section(arg: str = '') -> ml_collections.ConfigDict:
  """Regressor, training scales and localization inference options (`config.box` of the stage)."""
  b = ml_collections.ConfigDict()
  b.regression = 'single'  # 'single' (4 outputs) or 'per_class' (C x 4)
  b.hidden = (512, 128)
  b.fine = True  # train and infer at every offset of the offset pooling
  b.train_scales = (64, 80, 96, 112)
  b.eval_size = 72  # the `resize` eval view
  # The classification stage's evaluation range (80-152 px); from 72 px it was worse on the held-out draw
  # (seed 1): localization error 14.8 % with (72, 96, 120) vs 8.0 % with these four.
  b.eval_scales = (80, 104, 128, 152)
  b.top_k = 2
  b.merge = 'overlap'  # 'overlap', 'literal' or 'nms'
  # Greedy merge: 'pair' (paper: (b_i + b_j) / 2) or 'score' (confidence-weighted). Measured equal for
  # localization (held-out draw, t = 0.4, k = 2: 7.9 % vs 8.0 %); detection uses 'score' (embedded_detection.py).
  b.merge_average = 'pair'
  b.threshold = 0.4  # merge threshold t (measured: results/localization_detection.md)
  b.nms_iou = 0.5  # when merge == 'nms'
  b.loss_weight = 1.0
  if arg == 'smoke':  # one training scale: one compiled train step
    b.hidden, b.train_scales, b.eval_scales = (32, 16), (64,), (64, 80)
  return b


def section(arg: str = '') -> ml_collections.ConfigDict:
  s = ml_collections.ConfigDict()
  s.crop_size, s.resize_smaller, s.scale_jitter = 72, 0, ()  # whole images; flips only
  # A step count, not epochs: the classification stage's training-set size (data.options, shared with this
  # stage) may change without changing this stage's cost. Measured: 312 steps 22.1 %, 1,200 steps 10.6 %
  # localization error (same classifier); 1,000 steps = 64,000 images, about 1.5 min on 2 cores.
  s.num_train_steps = 1000
  s.box = box_section(arg)
  s.schedule = ml_collections.ConfigDict({'kind': 'cosine', 'base_lr': 1e-3, 'base_batch_size': 64,
                                          'decay_epochs': (), 'decay_factor': 0.5, 'warmup_epochs': 0.2})
  if arg == 'smoke':
    s.num_train_steps = 6
  return s


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  c = load_sibling('embedded', __file__).get_config(arg)
  c.stages = ('classification', 'localization')
  return c
