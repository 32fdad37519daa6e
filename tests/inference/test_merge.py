"""Tests of the jitted greedy merge: hand-worked cases and parity with the sequential reference."""

import jax
import numpy as np
import pytest

from overfeat_jax.errors import InputError
from overfeat_jax.inference import merge
from tests.inference import merge_reference
from tests.inference.merge_reference import merge_boxes_reference

N_PAD = 24  # every random set is padded to this size, so each score function compiles once


def _assert_same(got: merge.MergeResult, ref) -> None:
  """Identical merge sequence and bit-identical boxes and scores (same float32 operations in both)."""
  pairs = [tuple(int(v) for v in p) for p in np.asarray(got.pairs)[: int(got.num_merges)]]
  assert pairs == ref.pairs
  assert np.all(np.asarray(got.pairs)[int(got.num_merges):] == -1)
  np.testing.assert_array_equal(np.asarray(got.valid), ref.valid)
  np.testing.assert_array_equal(np.asarray(got.classes), ref.classes)
  np.testing.assert_array_equal(np.asarray(got.boxes), ref.boxes)
  np.testing.assert_array_equal(np.asarray(got.scores), ref.scores)


def _run_both(boxes, scores, classes, valid, threshold, score_fn, average='pair'):
  got = merge.merge_boxes(boxes, scores, classes, valid, threshold=threshold, score_fn=score_fn,
                          average=average)
  ref = merge_boxes_reference(boxes, scores, classes, valid, threshold=threshold, score_fn=score_fn,
                              average=average)
  return got, ref


def test_two_overlapping_boxes_merge_to_average_with_summed_score():
  # overlap score of a=(0,0,10,10), b=(2,0,12,10): centres 2 apart, mean diagonal sqrt(200) = 14.142,
  # IoU = 80 / 120 = 2/3 -> 2 / 14.142 + 1/3 = 0.4748. Below t = 0.5: merge to (1, 0, 11, 10), score 0.3 +
  # 0.5.
  # The third box (other class, same place) must not take part.
  boxes = np.array([[0, 0, 10, 10], [2, 0, 12, 10], [0, 0, 10, 10]], np.float32)
  scores, classes, valid = np.array([0.3, 0.5, 0.9]), np.array([1, 1, 2]), np.ones(3, bool)
  got = merge.merge_boxes(boxes, scores, classes, valid, threshold=0.5)
  np.testing.assert_array_equal(np.asarray(got.valid), [True, False, True])
  np.testing.assert_allclose(np.asarray(got.boxes[0]), [1, 0, 11, 10])
  np.testing.assert_allclose(float(got.scores[0]), 0.8, rtol=1e-6)
  assert int(got.num_merges) == 1
  # At t = 0.47 (below 0.4748) nothing merges.
  got = merge.merge_boxes(boxes, scores, classes, valid, threshold=0.47)
  assert int(got.num_merges) == 0


def test_literal_score_prefers_far_apart_boxes_over_overlapping_ones():
  # Literal reading: a=(0,0,10,10) vs b=(0,0,10,10) -> distance 0 + intersection 100 = 100;
  # a vs c=(30,0,40,10) -> distance 30 + intersection 0 = 30 (and b vs c also 30). The DISJOINT pair (0, 2)
  # merges
  # first, into (15, 0, 25, 10); then (0, 1): distance 15 + intersection 0 = 15 merges into (7.5, 0, 17.5,
  # 10).
  boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [30, 0, 40, 10]], np.float32)
  ones, zeros, valid = np.ones(3), np.zeros(3), np.ones(3, bool)
  got = merge.merge_boxes(boxes, ones, zeros, valid, threshold=50.0, score_fn='literal')
  assert [tuple(p) for p in np.asarray(got.pairs)[: int(got.num_merges)]] == [(0, 2), (0, 1)]
  np.testing.assert_allclose(np.asarray(got.boxes[0]), [7.5, 0, 17.5, 10])
  assert float(got.scores[0]) == 3.0
  # With t = 29 nothing merges (the identical pair scores 100, the disjoint ones 30).
  got = merge.merge_boxes(boxes, ones, zeros, valid, threshold=29.0, score_fn='literal')
  assert int(got.num_merges) == 0


def test_score_average_puts_the_box_where_the_confidence_is():
  # Scores 1 and 3: the merged box lies 3/4 of the way from box 0 to box 1 (1/4 from the confident one):
  # (1 * 0 + 3 * 4) / 4 = 3 for x1 and (1 * 10 + 3 * 14) / 4 = 13 for x2. 'pair' gives the midpoint 2 / 12.
  boxes = np.array([[0, 0, 10, 10], [4, 0, 14, 10]], np.float32)
  for average, want in (('score', [3, 0, 13, 10]), ('pair', [2, 0, 12, 10])):
    got, ref = _run_both(boxes, np.array([1.0, 3.0]), np.zeros(2), np.ones(2, bool), 1.0, 'overlap', average)
    _assert_same(got, ref)
    np.testing.assert_array_equal(np.asarray(got.boxes[0]), want)
    assert float(got.scores[0]) == 4.0


def _shifted(x1) -> np.ndarray:
  """40 x 40 boxes at the given left edges."""
  x1 = np.asarray(x1, np.float32)
  return np.stack([x1, np.zeros_like(x1), x1 + 40, np.full_like(x1, 40)], 1)


def test_score_average_of_a_chain_is_the_confidence_weighted_mean_of_all_members():
  # x1 = 0, 8, 16, 24 with confidences 1, 2, 4, 1 and t = 1e9. The adjacent pairs tie, so the merges are
  # (0, 1) -> (2, 3) -> (0, 2) in both modes. 'score': (0*1 + 8*2) / 3 = 16/3, (16*4 + 24*1) / 5 = 17.6, then
  # (16/3 * 3 + 17.6 * 5) / 8 = 13 = the confidence-weighted mean of the four originals (final score 8).
  # 'pair': 4, 20, then 12 (every member weighted 1/4, whatever its confidence).
  boxes, conf = _shifted([0, 8, 16, 24]), np.array([1, 2, 4, 1], np.float32)
  want = {'score': [13, 0, 53, 40], 'pair': [12, 0, 52, 40]}
  for average in merge.AVERAGES:
    got, ref = _run_both(boxes, conf, np.zeros(4), np.ones(4, bool), 1e9, 'overlap', average)
    _assert_same(got, ref)
    assert ref.pairs == [(0, 1), (2, 3), (0, 2)] and float(got.scores[0]) == 8.0
    np.testing.assert_allclose(np.asarray(got.boxes[0]), want[average], rtol=1e-6)


def test_score_average_does_not_give_a_late_weak_window_half_the_weight():
  # x1 = 0, 2, 18 with confidences 1, 1, 0.25: (0, 1) merge first (x1 = 1), then the weak outlier joins.
  # 'pair' moves the box halfway to it, x1 = (1 + 18) / 2 = 9.5; 'score' gives (0 + 2 + 18 * 0.25) / 2.25.
  boxes, conf = _shifted([0, 2, 18]), np.array([1, 1, 0.25], np.float32)
  for average, want in (('pair', 9.5), ('score', 6.5 / 2.25)):
    got, ref = _run_both(boxes, conf, np.zeros(3), np.ones(3, bool), 1e9, 'overlap', average)
    _assert_same(got, ref)
    assert ref.pairs == [(0, 1), (0, 2)]
    np.testing.assert_allclose(float(got.boxes[0, 0]), want, rtol=1e-6)


def test_score_average_of_zero_confidences_falls_back_to_the_midpoint():
  # Two zero-confidence windows must not collapse to (0, 0, 0, 0): their merge is the plain average.
  boxes = np.array([[10, 10, 20, 20], [12, 10, 22, 20]], np.float32)
  got, ref = _run_both(boxes, np.zeros(2), np.zeros(2), np.ones(2, bool), 1.0, 'overlap', 'score')
  _assert_same(got, ref)
  np.testing.assert_array_equal(np.asarray(got.boxes[0]), [11, 10, 21, 20])


def test_ties_take_smallest_pair_in_row_major_order():
  # Four identical boxes: every pair scores 0, so the merges are (0, 1), (0, 2), (0, 3) in that order.
  boxes = np.tile(np.array([[5, 5, 15, 25]], np.float32), (4, 1))
  got, ref = _run_both(boxes, np.arange(4, dtype=np.float32), np.zeros(4), np.ones(4, bool), 0.1, 'overlap')
  assert ref.pairs == [(0, 1), (0, 2), (0, 3)]
  _assert_same(got, ref)
  np.testing.assert_allclose(float(got.scores[0]), 0 + 1 + 2 + 3)


@pytest.mark.parametrize('n', [0, 1])
def test_empty_and_single_box(n):
  boxes = np.zeros((n, 4), np.float32) + np.array([0, 0, 3, 3], np.float32)
  got, ref = _run_both(boxes, np.ones(n), np.zeros(n), np.ones(n, bool), 10.0, 'overlap')
  assert int(got.num_merges) == 0
  _assert_same(got, ref)


def test_all_invalid_never_merges():
  boxes = np.tile(np.array([[0, 0, 10, 10]], np.float32), (N_PAD, 1))
  got, ref = _run_both(boxes, np.ones(N_PAD), np.zeros(N_PAD), np.zeros(N_PAD, bool), 10.0, 'overlap')
  assert int(got.num_merges) == 0 and not np.asarray(got.valid).any()
  _assert_same(got, ref)


def test_bad_input_raises():
  with pytest.raises(InputError):
    merge.merge_boxes(np.zeros((3, 4)), np.ones(3), np.zeros(3), np.ones(3, bool), threshold=1, score_fn='x')
  with pytest.raises(InputError):
    merge.merge_boxes(np.zeros((3, 5)), np.ones(3), np.zeros(3), np.ones(3, bool), threshold=1.0)
  with pytest.raises(InputError):
    merge.merge_boxes(np.zeros((3, 4)), np.ones(2), np.zeros(3), np.ones(3, bool), threshold=1.0)
  with pytest.raises(InputError, match='average'):
    merge.merge_boxes(np.zeros((3, 4)), np.ones(3), np.zeros(3), np.ones(3, bool), threshold=1.0, average='x')
  with pytest.raises(InputError, match='average'):
    merge_boxes_reference(np.zeros((3, 4)), np.ones(3), np.zeros(3), np.ones(3, bool), threshold=1.0,
                          average='mean')


@pytest.mark.parametrize('bad', [-0.5, np.nan, np.inf])
def test_reference_refuses_negative_or_non_finite_confidences_for_score_average(bad):
  scores = np.array([0.5, bad, 0.2], np.float32)
  with pytest.raises(InputError, match='>= 0'):
    merge_boxes_reference(np.zeros((3, 4)), scores, np.zeros(3), np.ones(3, bool), threshold=1.0,
                          average='score')
  # Padding is not checked, and the paper's 'pair' average does not use the scores as weights.
  merge_boxes_reference(np.zeros((3, 4)), scores, np.zeros(3), np.array([True, False, True]), threshold=1.0,
                        average='score')
  merge_boxes_reference(np.zeros((3, 4)), scores, np.zeros(3), np.ones(3, bool), threshold=1.0)


def _random_set(rng: np.random.Generator, kind: int):
  """A padded random box set: integer grids (many exact ties and duplicates), nested boxes, or floats."""
  n = int(rng.integers(0, N_PAD + 1))
  if kind == 0:  # small integer grid: duplicates, ties, zero-area and touching boxes
    xy = rng.integers(0, 8, (N_PAD, 2)).astype(np.float32)
    wh = rng.integers(0, 6, (N_PAD, 2)).astype(np.float32)
  elif kind == 1:  # nested boxes around one centre
    xy = np.repeat(rng.uniform(0, 5, (1, 2)), N_PAD, 0) - rng.integers(0, 10, (N_PAD, 1))
    wh = 2 * (np.repeat(rng.uniform(0, 5, (1, 2)), N_PAD, 0) - xy) + rng.integers(0, 3, (N_PAD, 2))
  else:  # clusters of noisy float boxes, as the regressor produces
    c = rng.uniform(0, 200, (3, 2))[rng.integers(0, 3, N_PAD)] + rng.normal(0, 5, (N_PAD, 2))
    wh = rng.uniform(0, 60, (N_PAD, 2))
    xy = c - wh / 2
  boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
  dup = rng.uniform(size=N_PAD) < 0.15  # exact duplicates of box 0
  boxes[dup] = boxes[0]
  scores = rng.uniform(0, 1, N_PAD).astype(np.float32)
  scores[rng.uniform(size=N_PAD) < 0.1] = 0.0  # zero confidences: the 'score' average's fallback
  classes = rng.integers(0, 3, N_PAD)
  valid = (np.arange(N_PAD) < n) & (rng.uniform(size=N_PAD) < 0.9)
  return boxes, scores, classes, valid


@pytest.mark.parametrize('average', merge.AVERAGES)
@pytest.mark.parametrize('score_fn,thresholds',
                         [('overlap', (0.3, 0.8, 1.5, 1e9)), ('literal', (5.0, 40.0, 1e9))])
def test_matches_reference_on_random_sets(score_fn, thresholds, average):
  rng = np.random.default_rng(1234)
  merges = 0
  for trial in range(150):
    boxes, scores, classes, valid = _random_set(rng, trial % 3)
    threshold = thresholds[trial % len(thresholds)]
    got, ref = _run_both(boxes, scores, classes, valid, threshold, score_fn, average)
    _assert_same(got, ref)
    merges += len(ref.pairs)
  assert merges > 500  # the sets really exercise merging, not just the stop condition


def test_threshold_is_traced_not_static():
  # One compilation serves every threshold: the jitted function's cache grows by one entry for a new N only.
  boxes = np.random.default_rng(0).uniform(0, 50, (7, 4)).astype(np.float32)
  merge.merge_boxes(boxes, np.ones(7), np.zeros(7), np.ones(7, bool), threshold=0.5)
  size = merge._merge_jit._cache_size()  # pylint: disable=protected-access
  for t in (0.1, 0.7, 2.0):
    jax.block_until_ready(merge.merge_boxes(boxes, np.ones(7), np.zeros(7), np.ones(7, bool), threshold=t))
  assert merge._merge_jit._cache_size() == size  # pylint: disable=protected-access


@pytest.mark.parametrize('score_fn', sorted(merge.SCORE_FUNCTIONS))
def test_jitted_score_matrix_equals_reference_bit_for_bit(score_fn):
  # Guards against fused multiply-adds (and any other reassociation) in the compiled score: ties must stay
  # ties.
  rng = np.random.default_rng(3)
  xy = rng.uniform(-50, 150, (64, 2))
  boxes = np.concatenate([xy, xy + rng.uniform(-5, 80, (64, 2))], 1).astype(np.float32)
  fn = merge.SCORE_FUNCTIONS[score_fn]
  got = np.asarray(jax.jit(lambda b: fn(b[:, None, :], b[None, :, :]))(boxes))
  ref_fn = merge_reference.SCORE_FUNCTIONS[score_fn]
  want = np.array([[ref_fn(list(a), list(b)) for b in boxes] for a in boxes], np.float32)
  np.testing.assert_array_equal(got, want)
