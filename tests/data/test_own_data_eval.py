"""Difficult (VOC) and crowd (COCO) boxes through the detection evaluation, from the folders to the summary.

A VOC folder whose p02 has a `<difficult>` bird and a COCO file whose p02 has an `iscrowd` bird are built; every
record goes through the evaluation batches (`pipeline.eval_iterator`, view 'resize'), and the detection summary
(`tasks.detection.make_summarize`) scores detector outputs made from the batches: every ground-truth box found
at 0.5, plus a 0.9 detection exactly on the ignored bird. The bird of p03 is the class's only ground truth.
Ignored (as VOCevaldet.m and COCO do): mAP 1.0. As the evaluation did before (the ignore boxes dropped from the
outputs): the 0.9 detection is a false positive ranked first, bird AP 1/2, mAP (1 + 1 + 1/2) / 3.
"""

import numpy as np
import pytest

from overfeat_jax.data import build as build_lib
from overfeat_jax.data import pipeline
from overfeat_jax.tasks import detection
from tests.data import own_data_photos as photos

SIZE = (photos.H, photos.W)  # the photos' own size: the 160x120 photos' boxes are unchanged by the view


def _eval_outputs(data_dir: str, name: str, bird: int) -> dict[str, np.ndarray]:
  """The detection summary's input over every split: the batches' boxes as detections, plus the bird."""
  rows = []
  for split in ('train', 'validation'):
    source = pipeline.open_source(name, split, data_dir=data_dir)
    for batch in pipeline.eval_iterator(source, batch_size=4, view='resize', size=SIZE, max_boxes=4,
                                        shard_index=0, shard_count=1):
      rows += [{k: v[i] for k, v in batch.items()} for i in np.flatnonzero(batch['mask'])]
  assert len(rows) == photos.EXPECTED_COCO_KEPT + ('voc' in name)  # VOC also keeps p07
  outputs = {'classes': [], 'boxes': [], 'scores': [], 'gt_boxes': [], 'box_labels': [], 'ignore_boxes': [],
             'ignore_labels': []}
  for row in rows:
    hard = row['ignore_labels'] >= 0
    if hard.any():  # p02's bird, in the view's pixels (the view is the photo's own size: unchanged)
      np.testing.assert_allclose(row['ignore_boxes'][hard], [[110, 60, 150, 100]])
      assert row['ignore_labels'][hard].tolist() == [bird]
    classes = np.concatenate([row['box_labels'], np.where(hard, row['ignore_labels'], -1)])
    outputs['classes'].append(classes)
    outputs['boxes'].append(np.concatenate([row['boxes'], row['ignore_boxes']]))
    outputs['scores'].append(np.concatenate([np.where(row['box_labels'] >= 0, 0.5, 0.0), np.where(hard, 0.9, 0.0)]))
    outputs['gt_boxes'].append(row['boxes'])
    for key in ('box_labels', 'ignore_boxes', 'ignore_labels'):
      outputs[key].append(row[key])
  assert sum(int((c == bird).sum()) for c in outputs['classes']) == 2  # p03's bird and the ignored one
  return {k: np.stack(v) for k, v in outputs.items()}


@pytest.mark.parametrize('fmt,bird', [('voc_folder', 0), ('coco_json', 2)])
def test_a_detection_on_a_difficult_or_crowd_box_does_not_lower_map(tmp_path, fmt, bird):
  make = photos.make_voc if fmt == 'voc_folder' else photos.make_coco
  root = make(str(tmp_path / 'photos'))
  classes = {'classes': f'{root}/classes.txt'} if fmt == 'voc_folder' else {}
  build_lib.build(fmt, str(tmp_path / 'd'), root, name='pets', **classes)
  outputs = _eval_outputs(str(tmp_path / 'd'), f'{fmt}/pets', bird)
  summarize = detection.make_summarize(len(photos.CLASSES))
  metrics = summarize(outputs)
  assert metrics['mAP'] == 1.0 and metrics['ignored'] == 1.0
  before = {k: v for k, v in outputs.items() if not k.startswith('ignore')}
  metrics = summarize(before)
  assert metrics['mAP'] == pytest.approx((1 + 1 + 0.5) / 3) and metrics['ignored'] == 0.0
