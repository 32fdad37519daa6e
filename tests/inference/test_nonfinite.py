"""Non-finite scores and boxes never hang or corrupt inference (issue 15 item 1; rule in `inference.nonfinite`).

The documented outcome: a candidate with a NaN/+-inf score or coordinate is dropped (exactly as if it were
padding) and counted; inverted boxes stay (empty). So each loop is checked against ITSELF on the same set with
those candidates turned into padding: equal results, bit for bit. Every call runs in a worker thread with a
time limit, so a loop that never ends FAILS the test instead of hanging CI.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overfeat_jax.inference import detect, localize, nonfinite
from overfeat_jax.inference.merge import merge_boxes
from overfeat_jax.inference.nms import nms
from overfeat_jax.models.geometry import get_geometry
from tests.inference._fake_models import FakeClassifier, FakeRegressor
from tests.time_limit import finishes

N = 8
_BAD = [np.nan, np.inf, -np.inf]


def as_padding(boxes, scores, valid):
  """The same set with every non-finite candidate turned into padding (finite zeros, valid False)."""
  bad = ~(np.isfinite(scores) & np.isfinite(boxes).all(axis=1))
  return np.where(bad[:, None], 0.0, boxes), np.where(bad, 0.0, scores), valid & ~bad


def test_issue_case_nms_keeps_box_0():
  boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
  keep = finishes(nms, boxes, np.array([0.9, np.nan]), np.zeros(2), np.ones(2, bool), iou_threshold=0.5)
  np.testing.assert_array_equal(keep, [True, False])


@pytest.mark.parametrize('method', ['nms', 'overlap', 'literal'])
def test_issue_case_through_merge_candidates(method):
  c = localize.Candidates(jnp.asarray([[[0, 0, 10, 10], [20, 20, 30, 30]]], jnp.float32),
                          jnp.asarray([[0.9, np.nan]]), jnp.zeros((1, 2), jnp.int32), jnp.ones((1, 2), bool))
  out = finishes(localize.merge_candidates, c, method=method, threshold=0.5)
  np.testing.assert_array_equal(out.valid, [[True, False]])
  assert int(finishes(nonfinite.num_dropped, c.boxes, c.scores, c.valid)[0]) == 1


@st.composite
def _box_set(draw):
  """N boxes (some inverted), scores in [0, 1], with NaN/+-inf put into some scores and some coordinates."""
  xy = np.asarray(draw(st.lists(st.floats(-20, 100, width=32), min_size=2 * N, max_size=2 * N)), np.float32)
  wh = np.asarray(draw(st.lists(st.floats(-30, 60, width=32), min_size=2 * N, max_size=2 * N)), np.float32)
  boxes = np.concatenate([xy.reshape(N, 2), xy.reshape(N, 2) + wh.reshape(N, 2)], axis=1)  # wh < 0: inverted
  scores = np.asarray(draw(st.lists(st.floats(0, 1, width=32), min_size=N, max_size=N)), np.float32)
  for i in draw(st.lists(st.integers(0, N - 1), max_size=N)):
    scores[i] = draw(st.sampled_from(_BAD))
  for i in draw(st.lists(st.integers(0, 4 * N - 1), max_size=4)):
    boxes.flat[i] = draw(st.sampled_from(_BAD))
  classes = np.asarray(draw(st.lists(st.integers(0, 1), min_size=N, max_size=N)), np.int32)
  valid = np.asarray(draw(st.lists(st.booleans(), min_size=N, max_size=N)), bool) | draw(st.booleans())
  return boxes, scores, classes, valid


@settings(max_examples=40, deadline=None)
@given(_box_set(), st.sampled_from([0.0, 0.5, 1.0]))
def test_nms_drops_nonfinite_candidates_as_padding(data, iou_threshold):
  boxes, scores, classes, valid = data
  keep = finishes(nms, boxes, scores, classes, valid, iou_threshold=iou_threshold)
  clean_boxes, clean_scores, clean_valid = as_padding(boxes, scores, valid)
  np.testing.assert_array_equal(keep, finishes(nms, clean_boxes, clean_scores, classes, clean_valid,
                                               iou_threshold=iou_threshold))
  assert not (keep & ~clean_valid).any()


@settings(max_examples=30, deadline=None)
@given(_box_set(), st.sampled_from(['overlap', 'literal']), st.sampled_from(['pair', 'score']),
       st.sampled_from([0.5, 50.0, np.inf]))
def test_greedy_merge_drops_nonfinite_candidates_as_padding(data, score_fn, average, threshold):
  boxes, scores, classes, valid = data
  options = dict(threshold=threshold, score_fn=score_fn, average=average)
  got = finishes(merge_boxes, boxes, scores, classes, valid, **options)
  clean_boxes, clean_scores, clean_valid = as_padding(boxes, scores, valid)
  want = finishes(merge_boxes, clean_boxes, clean_scores, classes, clean_valid, **options)
  kept = want.valid
  np.testing.assert_array_equal(got.valid, kept)
  np.testing.assert_array_equal(got.pairs, want.pairs)
  np.testing.assert_array_equal(got.boxes[kept], want.boxes[kept])
  np.testing.assert_array_equal(got.scores[kept], want.scores[kept])
  assert np.isfinite(got.boxes[kept]).all() and np.isfinite(got.scores[kept]).all()


@settings(max_examples=25, deadline=None)
@given(_box_set())
def test_top_guesses_rank_only_finite_candidates_and_pad_with_zeros(data):
  boxes, scores, classes, valid = data
  c = localize.Candidates(*(jnp.asarray(x)[None] for x in (boxes, scores, classes, valid)))
  got_classes, got_boxes, got_scores = finishes(localize.top_guesses, c, 5)
  assert np.isfinite(got_boxes).all() and np.isfinite(got_scores).all()
  clean = localize.Candidates(*(jnp.asarray(x)[None] for x in (*as_padding(boxes, scores, valid)[:2], classes,
                                                               as_padding(boxes, scores, valid)[2])))
  want_classes, want_boxes, want_scores = finishes(localize.top_guesses, clean, 5)
  np.testing.assert_array_equal(got_classes, want_classes)
  np.testing.assert_array_equal(got_scores, want_scores)
  np.testing.assert_array_equal(got_boxes, want_boxes)
  assert (got_boxes[got_classes < 0] == 0).all()


G = get_geometry('small', 16)
SCALES = ((64, 64),)
PARAMS = {'backbone': {}, 'regressor': {}}


@pytest.mark.parametrize('where,loc_method,det_method', [('scores', 'nms', 'overlap'), ('boxes', 'overlap', 'nms')])
def test_diverged_network_gives_no_guess_and_counts_every_candidate(where, loc_method, det_method):
  """A network whose class outputs (or regressor outputs) are all NaN: localization and detection return,
  report no guess (class -1, finite zeros), and count every candidate as dropped."""
  logits, spread = ((np.nan,) * 3, 0.0) if where == 'scores' else ((0.0, 3.0, 1.0), np.nan)
  model = localize.BoxModel(FakeClassifier(G, logits), FakeRegressor(G, spread))
  images = jnp.zeros((1, 72, 72, 3))
  windows = sum(G.output_size(h, True) * G.output_size(w, True) for h, w in SCALES)
  loc = finishes(localize.make_localizer(model, scales=SCALES, top_k=2, method=loc_method, threshold=0.5),
                 PARAMS, images)
  det = finishes(detect.make_detector(model, scales=SCALES, max_per_scale=64, method=det_method, threshold=0.5,
                                      score_threshold=0.1), PARAMS, images)
  for out in (loc, det):
    assert (out['classes'] == -1).all()
    assert (out['boxes'] == 0).all() and (out['scores'] == 0).all()
  np.testing.assert_array_equal(loc['num_nonfinite'], [windows * 2])
  # Detection: every (window, class) pair among the best 64 per scale; with NaN scores all of them count, with
  # NaN boxes those above the score threshold (class 1 of softmax(0, 3, 1); output 2 is the background).
  per_scale = [min(64, G.output_size(h, True) * G.output_size(w, True) * 2) for h, w in SCALES]
  if where == 'scores':
    np.testing.assert_array_equal(det['num_nonfinite'], [sum(per_scale)])
  else:
    assert (det['num_nonfinite'] > 0).all()
  assert not det['valid'].any()
