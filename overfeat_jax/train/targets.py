"""Window geometry and box targets of the dense regressor and detector (paper sections 4.2 and 5).

Which input window does an output cell see? Cell (r, c) of a dense map at stride `s` (the coarse stride, or the
fine stride of the interleaved offset-pooled map) is the network applied to the training-size window whose
top-left pixel is (r * s, c * s) in the image AS FED TO THE NETWORK (i.e. after resizing to one scale); its
size is `geometry.input_size` (the classifier's training crop: 64 for `small`, 231 fast, 221 accurate).

The >50% rule (spec section 5: "a location is not trained on a box that overlaps its input window by less than
50%"). We read "overlaps the window by more than 50%" as: more than half of the BOX's area lies inside the
window, `area(box ∩ window) / area(box) > 0.5`. Why this reading and not IoU > 0.5: with IoU, a box much smaller
than the window (a 14-pixel object in a 64-pixel window has IoU <= 0.05) would never be trained at the base
scale, while the paper trains every scale and lets the regressor predict boxes smaller than the window. Boxes
much larger than the window fail the rule at that scale and are learnt at the smaller scales, which is the
point of multi-scale training. Boxes of zero area never qualify. When several boxes qualify for one window, the
window is assigned the one with the highest IoU with the window (the box whose size best fits it; ties: the
lower index).

Box encoding (scale free): edges relative to the window's top-left corner, divided by the window size:
`t = ((x1 - wx) / S, (y1 - wy) / S, (x2 - wx) / S, (y2 - wy) / S)`. A box equal to the window is (0, 0, 1, 1)
at every scale, so one L2 loss serves all scales. Decoding inverts this and divides by the scale factors to get
back to the original image's pixels, then clips to the image.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from overfeat_jax.models.geometry import Geometry

MIN_COVERAGE = 0.5  # a window is trained on a box when more than this fraction of the box lies inside it


def stride(geometry: Geometry, fine: bool) -> int:
  """Input pixels between neighbouring cells of a dense map: fine (offset pooled) or coarse."""
  return geometry.fine_stride if fine else geometry.coarse_stride


def map_size(geometry: Geometry, size: tuple[int, int], fine: bool) -> tuple[int, int]:
  """(rows, cols) of the dense map for an input of (height, width)."""
  return geometry.output_size(size[0], fine), geometry.output_size(size[1], fine)


def window_boxes(geometry: Geometry, size: tuple[int, int], fine: bool) -> jax.Array:
  """The input window of every cell of the dense map of a (height, width) input: [rows, cols, 4] (x1, y1, x2, y2)."""
  rows, cols = map_size(geometry, size, fine)
  s, w = stride(geometry, fine), geometry.input_size
  y = jnp.arange(rows, dtype=jnp.float32) * s
  x = jnp.arange(cols, dtype=jnp.float32) * s
  yy, xx = jnp.meshgrid(y, x, indexing='ij')
  return jnp.stack([xx, yy, xx + w, yy + w], axis=-1)


def _area(b: jax.Array) -> jax.Array:
  return jnp.maximum(b[..., 2] - b[..., 0], 0.0) * jnp.maximum(b[..., 3] - b[..., 1], 0.0)


def _intersection(a: jax.Array, b: jax.Array) -> jax.Array:
  iw = jnp.maximum(jnp.minimum(a[..., 2], b[..., 2]) - jnp.maximum(a[..., 0], b[..., 0]), 0.0)
  ih = jnp.maximum(jnp.minimum(a[..., 3], b[..., 3]) - jnp.maximum(a[..., 1], b[..., 1]), 0.0)
  return iw * ih


def coverage(boxes: jax.Array, windows: jax.Array) -> jax.Array:
  """Fraction of each box's area inside each window (broadcasting): 0 for zero-area boxes."""
  a = _area(boxes)
  return jnp.where(a > 0, _intersection(boxes, windows) / jnp.where(a > 0, a, 1.0), 0.0)


class Assignment(NamedTuple):
  """Per window: the ground-truth box it is trained on, if any."""
  positive: jax.Array  # [..., P] bool: some box covers > MIN_COVERAGE of itself inside the window
  index: jax.Array  # [..., P] int32: the assigned box (0 where not positive)
  boxes: jax.Array  # [..., P, 4] the assigned box (zeros where not positive)
  labels: jax.Array  # [..., P] int32: its label (-1 where not positive)
  max_coverage: jax.Array  # [..., P] the largest fraction of any real box inside the window (0 if none)


def assign(windows: jax.Array, boxes: jax.Array, labels: jax.Array) -> Assignment:
  """Assigns ground-truth boxes to windows by the >50% rule (module docstring).

  Args:
    windows: [P, 4] windows.
    boxes: [M, 4] ground-truth boxes in the same pixels (padding rows are ignored through `labels`).
    labels: [M] int labels, negative for padding.

  Returns:
    An `Assignment` over the P windows.
  """
  cover = coverage(boxes[None, :, :], windows[:, None, :])  # [P, M]
  inter = _intersection(boxes[None, :, :], windows[:, None, :])
  union = _area(boxes)[None, :] + _area(windows)[:, None] - inter
  iou = inter / jnp.maximum(union, 1e-9)
  ok = (cover > MIN_COVERAGE) & (labels >= 0)[None, :]  # [P, M]
  best = jnp.argmax(jnp.where(ok, iou, -1.0), axis=1).astype(jnp.int32)  # [P]; first max on ties
  positive = ok.any(axis=1)
  index = jnp.where(positive, best, 0)
  chosen = jnp.where(positive[:, None], boxes[index], 0.0)
  chosen_labels = jnp.where(positive, labels[index], -1).astype(jnp.int32)
  max_cover = jnp.where((labels >= 0)[None, :], cover, 0.0).max(axis=1, initial=0.0)
  return Assignment(positive, index, chosen, chosen_labels, max_cover)


def encode(boxes: jax.Array, windows: jax.Array, window_size: float) -> jax.Array:
  """Boxes [..., 4] -> window-relative targets [..., 4] (edges minus the window's corner, over its size)."""
  corner = jnp.concatenate([windows[..., :2], windows[..., :2]], axis=-1)
  return (boxes - corner) / window_size


def decode(deltas: jax.Array, windows: jax.Array, window_size: float) -> jax.Array:
  """Inverse of `encode`: window-relative [..., 4] -> boxes [..., 4] in the windows' pixels."""
  corner = jnp.concatenate([windows[..., :2], windows[..., :2]], axis=-1)
  return deltas * window_size + corner


def to_image(boxes: jax.Array, scale_xy: tuple[float, float], image_hw: tuple[float, float]) -> jax.Array:
  """Boxes in a resized image's pixels -> the original image's pixels (divide by the scale), clipped to it.

  Args:
    boxes: [..., 4] in the resized image.
    scale_xy: (sx, sy) = resized width / original width, resized height / original height.
    image_hw: (height, width) of the original image; predictions outside it are clipped to its border.
  """
  sx, sy = scale_xy
  b = boxes / jnp.asarray([sx, sy, sx, sy], jnp.float32)
  h, w = image_hw
  lo = jnp.zeros(4, jnp.float32)
  hi = jnp.asarray([w, h, w, h], jnp.float32)
  b = jnp.clip(b, lo, hi)
  # Keep x1 <= x2, y1 <= y2 after a regressor crossed its edges: an inverted box becomes empty, not negative.
  return jnp.stack([b[..., 0], b[..., 1], jnp.maximum(b[..., 2], b[..., 0]), jnp.maximum(b[..., 3], b[..., 1])],
                   axis=-1)


def scale_boxes(boxes: jax.Array, scale_xy: tuple[float, float]) -> jax.Array:
  """Boxes [..., 4] of an image -> the same boxes in the image resized by (sx, sy)."""
  sx, sy = scale_xy
  return boxes * jnp.asarray([sx, sy, sx, sy], jnp.float32)


class DenseTargets(NamedTuple):
  """Targets of every cell of one scale's dense map, for a batch."""
  windows: jax.Array  # [rows, cols, 4] in the scaled image's pixels
  positive: jax.Array  # [B, rows, cols] bool
  labels: jax.Array  # [B, rows, cols] int32, -1 where not positive
  deltas: jax.Array  # [B, rows, cols, 4] window-relative targets (zeros where not positive)
  max_coverage: jax.Array  # [B, rows, cols] largest fraction of any box inside the window (detection negatives)


def dense_targets(geometry: Geometry, size: tuple[int, int], boxes: jax.Array, labels: jax.Array,
                  fine: bool = True) -> DenseTargets:
  """Targets of a batch resized to `size` (height, width).

  Args:
    geometry: the network's geometry (strides, window size).
    size: the (height, width) the images were resized to.
    boxes: [B, M, 4] ground-truth boxes ALREADY in the resized images' pixels.
    labels: [B, M] int, -1 for padding.
    fine: targets of the fine (offset-pooled) map, else the coarse map.
  """
  windows = window_boxes(geometry, size, fine)  # [rows, cols, 4]
  rows, cols = windows.shape[:2]
  flat = windows.reshape(-1, 4)
  a = jax.vmap(lambda b, l: assign(flat, b, l))(boxes, labels)
  deltas = encode(a.boxes, flat[None], geometry.input_size)
  deltas = jnp.where(a.positive[..., None], deltas, 0.0)
  batch = boxes.shape[0]
  return DenseTargets(windows, a.positive.reshape(batch, rows, cols), a.labels.reshape(batch, rows, cols),
                      deltas.reshape(batch, rows, cols, 4), a.max_coverage.reshape(batch, rows, cols))
