"""Detection sweep on the embedded dataset's `det` view (128-px images, up to 4 objects, some empty).

  python -m overfeat_jax.sweep --sweep=experiments/configs/sweeps/detection_embedded.py --workdir=/tmp/demo

Needs a detection stage in the workdir (`<workdir>/detection/checkpoints`: 10 classes + background, with the
regressor) or an exported detection artifact. Metric: mAP at IoU 0.5.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.task = 'detection'
  c.train_config = 'overfeat_jax.configs.embedded'
  c.data_from = 'workdir'  # the --workdir's config.json data if it has one; 'train_config': the above's
  # '' = the detection stage's own dataset (the embedded config's detection section names 'embedded_det'; an
  # own-data workdir's names its voc_folder/coco_json build, docs/own_data.md)
  c.data_name = ''
  c.eval_size = 128
  c.scales = (128, 160, 192)
  c.batch_size = 25
  c.max_boxes = 4  # every ground-truth box of the det view (the training config keeps 2)
  c.max_examples = 0
  c.box = ml_collections.ConfigDict(dict(score_threshold=0.3, max_per_scale=256, max_detections=32))
  c.defaults = ml_collections.ConfigDict(dict(models='first', view='dense', num_scales=3, fine=True,
                                              merge='overlap', threshold=0.8, average='pair'))
  # 'average' applies to the greedy merge only: the NMS points of the grid are not duplicated.
  c.grid = ml_collections.ConfigDict(dict(merge=('overlap', 'nms'), threshold=(0.5, 0.8),
                                          average=('pair', 'score')))
  c.points = ml_collections.ConfigDict({
      '1 scale': dict(num_scales=1),
      'coarse stride': dict(fine=False),
      'literal t=200': dict(merge='literal', threshold=200.0),
      'literal t=200, score-weighted': dict(merge='literal', threshold=200.0, average='score'),
  })
  return c
