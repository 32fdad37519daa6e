"""Tests of the jnp box and window ops: hand-worked values, the float64 metrics twin, the window encoding,
and hypothesis fuzzing with degenerate boxes."""

from hypothesis import given, settings, strategies as st
import jax.numpy as jnp
import numpy as np
import pytest

from overfeat_jax import box_ops
from overfeat_jax.metrics import boxes as metric_boxes
from overfeat_jax.models.geometry import get_geometry
from tests.inference import merge_reference

# Coordinates from tiny to huge (1e9 px) plus exact small integers, so that zero-area, inverted and identical
# boxes
# are frequent.
# No subnormal floats: XLA's CPU backend flushes float32 subnormals to zero and numpy does not, so a box 1e-45
# pixels high has area 0 in jax and 1e-45 in the numpy reference (a CI run drew one). Pixel boxes never are.
_COORD = st.one_of(st.integers(-5, 5).map(float),
                   st.floats(-1e9, 1e9, allow_nan=False, allow_subnormal=False, width=32))
_BOX = st.tuples(_COORD, _COORD, _COORD, _COORD)
G = get_geometry('small', 8)  # window 64, coarse stride 16, fine stride 8


def test_hand_worked_values():
  # a covers pixels 0..9 x 0..9 (area 100); b covers 5..14 x 0..9 (area 100); overlap 5 x 10 = 50.
  # IoU = 50 / (100 + 100 - 50) = 1/3. Centres (5, 5) and (10, 5): distance 5.
  a = jnp.array([0.0, 0.0, 10.0, 10.0])
  b = jnp.array([5.0, 0.0, 15.0, 10.0])
  assert float(box_ops.area(a)) == 100.0
  assert float(box_ops.intersection(a, b)) == 50.0
  np.testing.assert_allclose(float(box_ops.iou(a, b)), 1.0 / 3.0, rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(box_ops.centers(b)), [10.0, 5.0])
  assert float(box_ops.center_distance(a, b)) == 5.0
  # 3-4-5 box: diagonal 5.
  assert float(box_ops.diagonal(jnp.array([1.0, 1.0, 4.0, 5.0]))) == 5.0


def test_touching_and_inverted_boxes_have_no_overlap():
  # Touching at x = 10: pixel columns 0..9 and 10..19 share no pixel.
  assert float(box_ops.iou(jnp.array([0.0, 0, 10, 10]), jnp.array([10.0, 0, 20, 10]))) == 0.0
  inverted = jnp.array([10.0, 10, 0, 0])
  assert float(box_ops.area(inverted)) == 0.0
  assert float(box_ops.iou(inverted, jnp.array([0.0, 0, 10, 10]))) == 0.0


def test_pairwise_shape_and_values():
  a = jnp.array([[0.0, 0, 10, 10], [0, 0, 5, 5]])
  b = jnp.array([[0.0, 0, 10, 10], [0, 0, 5, 5], [20, 20, 30, 30]])
  got = np.asarray(box_ops.pairwise_iou(a, b))
  # Row 1: the 5x5 box inside the 10x10 box: 25 / 100.
  np.testing.assert_allclose(got, [[1.0, 0.25, 0.0], [0.25, 1.0, 0.0]], rtol=1e-6)


def test_clip_to_image():
  # Image 20 high, 30 wide: a box past the right/top border is cut, a box fully outside becomes empty.
  got = np.asarray(box_ops.clip(jnp.array([[-5.0, -5, 40, 10], [35, 25, 50, 40]]), 20, 30))
  np.testing.assert_array_equal(got, [[0, 0, 30, 10], [30, 20, 30, 20]])
  assert float(box_ops.area(jnp.asarray(got[1]))) == 0.0


@settings(max_examples=200, deadline=None)
@given(_BOX, _BOX)
def test_iou_fuzz_bounded_symmetric_and_finite(a, b):
  a, b = jnp.array(a, jnp.float32), jnp.array(b, jnp.float32)
  ab, ba = float(box_ops.iou(a, b)), float(box_ops.iou(b, a))
  assert 0.0 <= ab <= 1.0
  assert ab == ba
  values = (box_ops.area(a), box_ops.intersection(a, b), box_ops.center_distance(a, b), box_ops.diagonal(a))
  for value in values:
    assert np.isfinite(float(value)) and float(value) >= 0.0
  if float(box_ops.area(a)) > 0:
    assert float(box_ops.iou(a, a)) == 1.0
  # The sequential reference (used by the merge/NMS parity tests) agrees bit for bit.
  ref = merge_reference.iou([np.float32(v) for v in np.asarray(a)], [np.float32(v) for v in np.asarray(b)])
  assert float(ref) == ab


def test_iou_matches_the_float64_metrics_twin():
  # Integer and half-pixel boxes (exact in float32), inverted and empty ones included: the on-device IoU and the
  # metrics' float64 devkit-exact IoU agree to float32 rounding.
  rng = np.random.default_rng(0)
  a = (rng.integers(-10, 200, size=(60, 4)) / 2).astype(np.float32)
  b = (rng.integers(-10, 200, size=(50, 4)) / 2).astype(np.float32)
  b[:5] = a[:5]  # identical boxes: IoU 1 where the area is positive
  got = np.asarray(box_ops.pairwise_iou(jnp.asarray(a), jnp.asarray(b)))
  want = metric_boxes.pairwise_iou(a, b)
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
  np.testing.assert_array_equal(np.asarray(box_ops.area(jnp.asarray(a))) == 0, metric_boxes.area(a) == 0)


def test_window_boxes_fine_and_coarse():
  fine = np.asarray(box_ops.window_boxes(G, (80, 96), fine=True))
  assert fine.shape == (4, 6, 4)  # output_size(80, fine) = 4, output_size(96, fine) = 6
  np.testing.assert_array_equal(fine[1, 2], [16, 8, 80, 72])  # (x1, y1, x2, y2): col 2 * 8, row 1 * 8
  coarse = np.asarray(box_ops.window_boxes(G, (80, 80), fine=False))
  assert coarse.shape == (2, 2, 4)
  np.testing.assert_array_equal(coarse[1, 1], [16, 16, 80, 80])


@pytest.mark.parametrize('fine', [True, False])
@pytest.mark.parametrize('size', [(64, 64), (80, 96), (128, 112)])
def test_encode_decode_round_trip(fine, size):
  image_hw = (72, 72)
  box = np.array([12.5, 20.0, 50.0, 61.0], np.float32)
  scale = (size[1] / image_hw[1], size[0] / image_hw[0])
  scaled = box_ops.scale_boxes(box, scale)
  windows = box_ops.window_boxes(G, size, fine)
  deltas = box_ops.encode(scaled, windows, G.input_size)  # [rows, cols, 4]
  back = box_ops.to_image(box_ops.decode(deltas, windows, G.input_size), scale, image_hw)
  np.testing.assert_allclose(np.asarray(back), np.broadcast_to(box, back.shape), atol=1e-4)


def test_encoding_is_scale_free():
  # A box equal to a window encodes to (0, 0, 1, 1) whatever the window's place.
  windows = box_ops.window_boxes(G, (96, 96), True)
  np.testing.assert_allclose(np.asarray(box_ops.encode(windows, windows, 64)), np.broadcast_to([0, 0, 1, 1],
                                                                                                 windows.shape))


def test_to_image_clips_outside_predictions():
  out = np.asarray(box_ops.to_image(np.array([[-20.0, 5.0, 200.0, -3.0]]), (2.0, 2.0), (50, 60)))
  np.testing.assert_allclose(out, [[0.0, 2.5, 60.0, 2.5]])
