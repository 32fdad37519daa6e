"""The >50% rule of the box targets, on hand-worked numbers (windows and encoding: tests/test_box_ops.py)."""

import numpy as np

from overfeat_jax.models.geometry import get_geometry
from overfeat_jax.tasks import targets

G = get_geometry('small', 8)  # window 64, coarse stride 16, fine stride 8


def test_assignment_by_hand():
  # Box 20x20 at (10, 10). Window origins 0, 8, 16, 24 per axis (64 wide). Fraction of the box's extent inside
  # a window along one axis: origin 0 or 8 -> 1.0; 16 -> 14/20 = 0.7; 24 -> 6/20 = 0.3. Coverage is the product;
  # trained where > 0.5: every (1.0|0.7) x (1.0|0.7) pair except 0.7 x 0.7 = 0.49.
  boxes = np.array([[[10, 10, 30, 30]]], np.float32)
  t = targets.dense_targets(G, (80, 80), boxes, np.array([[3]]), fine=True)
  expected = np.zeros((4, 4), bool)
  expected[:3, :3] = True
  expected[2, 2] = False
  np.testing.assert_array_equal(np.asarray(t.positive[0]), expected)
  np.testing.assert_array_equal(np.asarray(t.labels[0]), np.where(expected, 3, -1))
  # Cell (1, 0): window (0, 8, 64, 72) -> ((10 - 0) / 64, (10 - 8) / 64, (30 - 0) / 64, (30 - 8) / 64).
  np.testing.assert_allclose(np.asarray(t.deltas[0, 1, 0]), np.array([10, 2, 30, 22]) / 64, rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(t.deltas[0, 3, 3]), 0.0)


def test_zero_area_and_padding_never_assigned():
  boxes = np.array([[[10, 10, 10, 40], [5, 5, 30, 30]]], np.float32)
  t = targets.dense_targets(G, (80, 80), boxes, np.array([[1, -1]]), fine=True)
  assert not np.asarray(t.positive).any()


def test_best_fitting_box_wins():
  # Both boxes lie inside window (0, 0, 64, 64); the 60x60 box has the larger IoU with it.
  boxes = np.array([[[2, 2, 20, 20], [2, 2, 62, 62]]], np.float32)
  t = targets.dense_targets(G, (64, 64), boxes, np.array([[4, 7]]), fine=True)
  assert t.positive.shape == (1, 2, 2)
  assert int(t.labels[0, 0, 0]) == 7
  # Window (8, 8, 72, 72) contains only 54^2 / 60^2 = 0.81 of the big box and none of the small one fully:
  # small box coverage = 12*12/18/18 = 0.44 -> only the big box qualifies.
  assert int(t.labels[0, 1, 1]) == 7
