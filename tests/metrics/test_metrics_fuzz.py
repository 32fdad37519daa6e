"""Hypothesis fuzzing of the metric functions with random and degenerate boxes (zero area, inverted, huge)."""

from hypothesis import given, settings, strategies as st
import hypothesis.extra.numpy as hnp
import numpy as np

from overfeat_jax.metrics import boxes as box_lib
from overfeat_jax.metrics import classification, detection, localization

_COORD = st.one_of(st.integers(-4, 4).map(float), st.floats(-1e12, 1e12, allow_nan=False))


def _boxes(max_n: int = 6):
  return hnp.arrays(np.float64, st.tuples(st.integers(0, max_n), st.just(4)), elements=_COORD)


@settings(max_examples=150, deadline=None)
@given(_boxes(), _boxes())
def test_iou_is_bounded_symmetric_and_one_on_itself(a, b):
  iou = box_lib.pairwise_iou(a, b)
  assert iou.shape == (len(a), len(b))
  assert np.all((iou >= 0) & (iou <= 1))
  np.testing.assert_array_equal(iou, box_lib.pairwise_iou(b, a).T)
  self_iou = np.diag(box_lib.pairwise_iou(a, a))
  positive = box_lib.area(a) > 0
  np.testing.assert_allclose(self_iou[positive], 1.0, rtol=1e-12)
  assert np.all(self_iou[~positive] == 0)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_topk_errors_are_rates_and_monotone_in_k(data):
  n, c = data.draw(st.integers(1, 8)), data.draw(st.integers(1, 7))
  elements = st.floats(-1e6, 1e6) | st.sampled_from([0.0, 1.0])  # many exact ties
  scores = data.draw(hnp.arrays(np.float64, (n, c), elements=elements))
  labels = data.draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, c - 1)))
  errors = classification.topk_errors(scores, labels, ks=(1, 2, 5))
  assert all(0 <= v <= 1 for v in errors.values())
  assert errors['top1_error'] >= errors['top2_error'] >= errors['top5_error']
  if c <= 5:
    assert errors['top5_error'] == 0.0


@st.composite
def _image(draw, num_classes: int = 3):
  det_boxes, gt_boxes = draw(_boxes()), draw(_boxes())
  det_scores = draw(hnp.arrays(np.float64, len(det_boxes), elements=st.floats(-1e3, 1e3) | st.just(0.5)))
  det_classes = draw(hnp.arrays(np.int64, len(det_boxes), elements=st.integers(0, num_classes - 1)))
  gt_classes = draw(hnp.arrays(np.int64, len(gt_boxes), elements=st.integers(0, num_classes - 1)))
  return det_boxes, det_scores, det_classes, gt_boxes, gt_classes


@settings(max_examples=100, deadline=None)
@given(st.lists(_image(), min_size=1, max_size=4), st.booleans(), st.sampled_from(detection.MATCHING))
def test_ap_is_in_unit_interval_and_never_nan_for_classes_with_gt(images, relax, matching):
  acc = detection.DetectionAccumulator(3, small_box_relaxation=relax, matching=matching)
  for image in images:
    acc.add_image(*image)
  result = acc.result()
  assert all(0.0 <= ap <= 1.0 for ap in result.ap.values())
  assert sorted(list(result.ap) + result.classes_without_gt) == [0, 1, 2]
  if result.ap:
    assert 0.0 <= result.mean_ap <= 1.0
  # Perfect detections (every gt box detected once, exactly) give AP 1 for every class with positive-area gt
  # under ILSVRC matching (VOC matching may call the detection of a second identical gt box a duplicate).
  perfect = detection.DetectionAccumulator(3, matching='ilsvrc')
  for _, _, _, gt_boxes, gt_classes in images:
    keep = box_lib.area(gt_boxes) > 0
    perfect.add_image(gt_boxes[keep], np.ones(keep.sum()), gt_classes[keep], gt_boxes[keep], gt_classes[keep])
  assert all(ap == 1.0 for ap in perfect.result().ap.values())


@settings(max_examples=100, deadline=None)
@given(st.lists(_image(), min_size=1, max_size=4))
def test_localization_error_is_in_unit_interval(images):
  counts = localization.LocalizationCounts()
  for det_boxes, _, det_classes, gt_boxes, gt_classes in images:
    counts = counts.add_image(det_classes, det_boxes, gt_classes, gt_boxes)
  result = counts.result()
  assert result.num_images + result.num_skipped == len(images)
  if result.num_images:
    assert 0.0 <= result.error <= 1.0 and 0.0 <= result.classification_error <= result.error
  else:
    assert np.isnan(result.error)
