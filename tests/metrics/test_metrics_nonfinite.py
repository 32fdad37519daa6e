"""Non-finite and inverted input to the host metrics (issue 15 item 1): one InputError or a finite number, always
returned in time. Rules: docs/metrics_and_merge.md ("Non-finite numbers")."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overfeat_jax.errors import InputError
from overfeat_jax.metrics import detection, localization
from tests.time_limit import finishes

_BAD = [np.nan, np.inf, -np.inf]
_FINITE = st.floats(-20, 60, allow_nan=False, width=32)


@st.composite
def _image(draw):
  """Detections and ground truth of one image (inverted boxes allowed), with non-finite values put in."""
  d, m = draw(st.integers(0, 5)), draw(st.integers(0, 4))
  det = np.asarray(draw(st.lists(_FINITE, min_size=4 * d, max_size=4 * d)), np.float64).reshape(d, 4)
  gt = np.asarray(draw(st.lists(_FINITE, min_size=4 * m, max_size=4 * m)), np.float64).reshape(m, 4)
  scores = np.asarray(draw(st.lists(st.floats(0, 1), min_size=d, max_size=d)), np.float64)
  where = draw(st.sampled_from(['none', 'score', 'det_box', 'gt_box']))
  target = {'score': scores, 'det_box': det, 'gt_box': gt}.get(where)
  if target is not None and target.size:
    target.flat[draw(st.integers(0, target.size - 1))] = draw(st.sampled_from(_BAD))
  classes = np.asarray(draw(st.lists(st.integers(0, 1), min_size=d, max_size=d)), np.int64)
  gt_classes = np.asarray(draw(st.lists(st.integers(0, 1), min_size=m, max_size=m)), np.int64)
  return det, scores, classes, gt, gt_classes


def _finite(image) -> bool:
  det, scores, _, gt, _ = image
  return bool(np.isfinite(det).all() and np.isfinite(scores).all() and np.isfinite(gt).all())


@settings(max_examples=80, deadline=None)
@given(st.lists(_image(), min_size=1, max_size=3), st.sampled_from(['ilsvrc', 'voc']))
def test_detection_accumulator_refuses_nonfinite_input_or_gives_ap_in_unit_interval(images, matching):
  def run():
    acc = detection.DetectionAccumulator(2, matching=matching, small_box_relaxation=True)
    for image in images:
      acc.add_image(*image)
    return acc.result()
  if all(_finite(im) for im in images):
    result = finishes(run)
    assert all(0.0 <= ap <= 1.0 for ap in result.ap.values())
  else:
    with pytest.raises(InputError, match='finite|NaN or infinite'):
      finishes(run)


@settings(max_examples=60, deadline=None)
@given(_image())
def test_localization_refuses_nonfinite_boxes_or_gives_errors_in_unit_interval(image):
  det, _, classes, gt, gt_classes = image
  if _finite((det, np.zeros(0), None, gt, None)):
    out = finishes(localization.image_errors, classes, det, gt_classes, gt)
    assert out is None if gt.shape[0] == 0 else all(0.0 <= e <= 1.0 for e in out)
  else:
    with pytest.raises(InputError, match='NaN or infinite'):
      finishes(localization.image_errors, classes, det, gt_classes, gt)


def test_unused_guess_slots_are_not_read():
  """Padding slots (class -1) may hold anything (a dropped candidate's NaN box): they are never read."""
  err = localization.image_errors([3, -1], [[0, 0, 10, 10], [np.nan] * 4], [3], [[0, 0, 10, 10]])
  assert err == (0.0, 0.0)
