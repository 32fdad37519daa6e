"""Hypothesis fuzz of the inference box machinery (greedy merge, NMS) with random and degenerate boxes: zero
width, inverted corners, identical copies, huge and tiny coordinates. The metrics' own IoU/AP fuzz lives in
tests/metrics/test_metrics_fuzz.py and box_ops' IoU fuzz in tests/inference/test_box_ops.py; this covers what
consumes them. Sizes are fixed (N = 8) so each function compiles once."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from overfeat_jax import box_ops
from overfeat_jax.inference.merge import merge_boxes
from overfeat_jax.inference.nms import nms

N = 8
_COORD = st.one_of(st.floats(-50, 300, width=32), st.sampled_from([0.0, 1.0, 1e4, -1e4, 1e-3]))


@st.composite
def _box(draw):
  x1, y1 = draw(_COORD), draw(_COORD)
  kind = draw(st.sampled_from(['normal', 'zero_width', 'zero_height', 'inverted', 'point']))
  w, h = draw(st.floats(0.5, 200, width=32)), draw(st.floats(0.5, 200, width=32))
  w, h = {'zero_width': (0.0, h), 'zero_height': (w, 0.0), 'inverted': (-w, -h), 'point': (0.0, 0.0)}.get(
      kind, (w, h))
  return [x1, y1, x1 + w, y1 + h]


@st.composite
def _box_set(draw):
  boxes = draw(st.lists(_box(), min_size=N, max_size=N))
  if draw(st.booleans()):  # identical copies
    boxes[1] = list(boxes[0])
  scores = draw(st.lists(st.floats(0, 1, width=32), min_size=N, max_size=N))
  classes = draw(st.lists(st.integers(0, 2), min_size=N, max_size=N))
  valid = draw(st.lists(st.booleans(), min_size=N, max_size=N))
  return (np.asarray(boxes, np.float32), np.asarray(scores, np.float32), np.asarray(classes, np.int32),
          np.asarray(valid, bool))


@settings(max_examples=60, deadline=None)
@given(_box_set(), st.sampled_from(['overlap', 'literal']), st.sampled_from([-1.0, 0.5, 1.0, 50.0, np.inf]),
       st.sampled_from(['pair', 'score']))
def test_merge_conserves_scores_and_stays_inside_the_inputs(data, score_fn, threshold, average):
  boxes, scores, classes, valid = data
  out = merge_boxes(boxes, scores, classes, valid, threshold=threshold, score_fn=score_fn, average=average)
  kept = np.asarray(out.valid)
  assert not (kept & ~valid).any()  # nothing appears from padding
  assert kept.sum() == valid.sum() - int(out.num_merges)
  np.testing.assert_array_equal(np.asarray(out.classes), classes)
  merged = np.asarray(out.boxes)[kept]
  assert np.isfinite(merged).all() and np.isfinite(np.asarray(out.scores)[kept]).all()
  for c in np.unique(classes[valid]):
    of_c = valid & (classes == c)
    np.testing.assert_allclose(np.asarray(out.scores)[kept & (classes == c)].sum(), scores[of_c].sum(),
                               rtol=1e-5, atol=1e-5)  # a merged box carries the sum of its members' scores
    lo, hi = boxes[of_c].min(axis=0), boxes[of_c].max(axis=0)
    span = np.maximum(np.abs(lo), np.abs(hi)) * 1e-5 + 1e-4
    inside = np.asarray(out.boxes)[kept & (classes == c)]
    assert ((inside >= lo - span) & (inside <= hi + span)).all()  # averages stay within the members' range
  if threshold < 0:
    assert int(out.num_merges) == 0  # match scores are never negative


@settings(max_examples=60, deadline=None)
@given(_box_set(), st.sampled_from([0.0, 0.3, 0.5, 0.99]))
def test_nms_keeps_the_best_and_leaves_no_overlapping_pair(data, iou_threshold):
  boxes, scores, classes, valid = data
  keep = np.asarray(nms(boxes, scores, classes, valid, iou_threshold=iou_threshold))
  assert not (keep & ~valid).any()
  iou = np.asarray(box_ops.pairwise_iou(boxes, boxes))
  assert np.isfinite(iou).all() and (iou >= 0).all() and (iou <= 1 + 1e-6).all()
  for c in np.unique(classes[valid]):
    of_c = np.flatnonzero(valid & (classes == c))
    assert keep[of_c[np.argmax(scores[of_c])]] or np.sum(scores[of_c] == scores[of_c].max()) > 1
    kept = np.flatnonzero(keep & (classes == c))
    pair = iou[np.ix_(kept, kept)] - np.eye(len(kept))
    assert (pair <= iou_threshold + 1e-6).all()
