"""Tests of the jitted per-class NMS: hand-worked cases and parity with the sequential reference."""

import numpy as np
import pytest

from overfeat_jax.errors import InputError
from overfeat_jax.inference.nms import nms
from tests.inference.merge_reference import nms_reference

N_PAD = 32


def test_hand_worked_suppression():
  # Box 1 (score 0.9) is kept first. Box 0 = (0,0,10,10) vs box 1 = (1,0,11,10): IoU 90 / 110 = 0.818 > 0.5 ->
  # suppressed. Box 2 (other class, same place as box 1) survives. Box 3 = (20,0,30,10) does not overlap ->
  # kept.
  boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [1, 0, 11, 10], [20, 0, 30, 10]], np.float32)
  scores, classes, valid = np.array([0.8, 0.9, 0.1, 0.2]), np.array([0, 0, 1, 0]), np.ones(4, bool)
  keep = nms(boxes, scores, classes, valid, iou_threshold=0.5)
  np.testing.assert_array_equal(np.asarray(keep), [False, True, True, True])
  # At threshold 0.85 the 0.818 overlap no longer suppresses.
  keep = nms(boxes, scores, classes, valid, iou_threshold=0.85)
  np.testing.assert_array_equal(np.asarray(keep), [True, True, True, True])


def test_equal_scores_keep_lower_index_and_padding_is_never_kept():
  boxes = np.tile(np.array([[0, 0, 10, 10]], np.float32), (4, 1))
  keep = nms(boxes, np.ones(4), np.zeros(4), np.array([False, True, True, True]), iou_threshold=0.5)
  np.testing.assert_array_equal(np.asarray(keep), [False, True, False, False])


def test_zero_area_and_inverted_boxes_are_kept_not_suppressing():
  # Zero-area and inverted boxes have IoU 0 with everything, so they neither suppress nor get suppressed.
  boxes = np.array([[5, 5, 5, 5], [5, 5, 5, 5], [0, 0, 10, 10], [10, 10, 0, 0]], np.float32)
  keep = nms(boxes, np.array([1.0, 0.5, 0.2, 0.9]), np.zeros(4), np.ones(4, bool), iou_threshold=0.3)
  np.testing.assert_array_equal(np.asarray(keep), [True, True, True, True])


def test_nonfinite_scores_and_boxes_are_dropped():
  # -inf, +inf and NaN scores, and a NaN coordinate: dropped (never kept, never suppressing; inference.nonfinite),
  # so the finite box 4 under them survives.
  boxes = np.array([[0, 0, 10, 10]] * 4 + [[0, 0, 10, 10], [0, 0, np.nan, 10]], np.float32)
  scores = np.array([-np.inf, np.inf, np.nan, np.nan, 0.1, 0.9])
  keep = nms(boxes, scores, np.zeros(6), np.ones(6, bool), iou_threshold=0.3)
  np.testing.assert_array_equal(np.asarray(keep), [False, False, False, False, True, False])


def test_empty_input_and_bad_shapes():
  assert nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0), np.zeros(0, bool), iou_threshold=0.5).shape == (0,)
  with pytest.raises(InputError):
    nms(np.zeros((3, 4)), np.zeros(2), np.zeros(3), np.ones(3, bool), iou_threshold=0.5)


def test_matches_reference_on_random_sets():
  rng = np.random.default_rng(7)
  suppressed = 0
  for trial in range(200):
    if trial % 2:  # small integer grid: exact duplicates, equal scores and zero-area boxes
      xy = rng.integers(0, 6, (N_PAD, 2)).astype(np.float32)
      boxes = np.concatenate([xy, xy + rng.integers(0, 5, (N_PAD, 2))], 1).astype(np.float32)
      scores = rng.integers(0, 4, N_PAD).astype(np.float32)
    else:
      xy = rng.uniform(0, 100, (N_PAD, 2))
      boxes = np.concatenate([xy, xy + rng.uniform(0, 60, (N_PAD, 2))], 1).astype(np.float32)
      scores = rng.normal(size=N_PAD).astype(np.float32)
    classes = rng.integers(0, 3, N_PAD)
    valid = (np.arange(N_PAD) < rng.integers(0, N_PAD + 1)) & (rng.uniform(size=N_PAD) < 0.9)
    threshold = float(rng.choice([0.0, 0.3, 0.5, 0.7, 1.0]))
    got = np.asarray(nms(boxes, scores, classes, valid, iou_threshold=threshold))
    want = nms_reference(boxes, scores, classes, valid, iou_threshold=threshold)
    np.testing.assert_array_equal(got, want, err_msg=f'trial {trial}')
    suppressed += int(valid.sum() - want.sum())
  assert suppressed > 150  # the sets really exercise suppression (244 with this seed)
