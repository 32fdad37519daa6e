"""Localization sweep on the embedded dataset: box merge variants (greedy 'overlap' / 'literal', NMS), t, k,
and the merged box's average ('pair': the paper's (b_i + b_j) / 2; 'score': confidence-weighted).

  python -m overfeat_jax.sweep --sweep=experiments/configs/sweeps/localization_embedded.py --workdir=/tmp/demo

Needs a localization stage in the workdir (`<workdir>/localization/checkpoints`, or an exported localization
artifact). The scales are the sweep's own (the training config may have no box section).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.task = 'localization'
  c.train_config = 'overfeat_jax.configs.embedded'
  c.data_from = 'workdir'  # the --workdir's config.json data if it has one; 'train_config': the above's
  c.data_name = ''
  c.eval_size = 72
  c.scales = (72, 88, 104, 120)  # the demo's evaluation scales
  c.batch_size = 50
  c.max_examples = 500  # half the test split: the sweep's 19 points fit in minutes on 2 CPU cores
  c.box = ml_collections.ConfigDict()
  c.defaults = ml_collections.ConfigDict(dict(models='first', view='dense', num_scales=4, fine=True, top_k=2,
                                              merge='overlap', threshold=0.8, average='pair'))
  # 'overlap' scores are scale free (t ~ 0.5-1.0); 'literal' scores are pixels + pixels^2 (t in the hundreds).
  c.grid = ml_collections.ConfigDict(dict(threshold=(0.4, 0.8, 1.2), top_k=(1, 2), average=('pair', 'score')))
  c.points = ml_collections.ConfigDict({
      '1 scale': dict(num_scales=1),
      'coarse stride': dict(fine=False),
      'literal t=100': dict(merge='literal', threshold=100.0),
      'literal t=400': dict(merge='literal', threshold=400.0),
      'literal t=400, score-weighted': dict(merge='literal', threshold=400.0, average='score'),
      'nms (IoU 50%)': dict(merge='nms', threshold=0.5),
      'nms (IoU 30%)': dict(merge='nms', threshold=0.3),
  })
  return c
