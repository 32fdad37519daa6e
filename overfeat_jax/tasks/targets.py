"""Box targets of the dense regressor and detector (paper sections 4.2 and 5): which window trains on which box.

The windows of a dense map, the window-relative box encoding and the box arithmetic live in
`overfeat_jax.box_ops` (shared with inference); this module holds only the training rule below.

The >50% rule (spec section 5: "a location is not trained on a box that overlaps its input window by less than
50%"). We read "overlaps the window by more than 50%" as: more than half of the BOX's area lies inside the
window, `area(box ∩ window) / area(box) > 0.5`. Why this reading and not IoU > 0.5: with IoU, a box much smaller
than the window (a 14-pixel object in a 64-pixel window has IoU <= 0.05) would never be trained at the base
scale, while the paper trains every scale and lets the regressor predict boxes smaller than the window. Boxes
much larger than the window fail the rule at that scale and are learnt at the smaller scales, which is the
point of multi-scale training. Boxes of zero area never qualify. When several boxes qualify for one window, the
window is assigned the one with the highest IoU with the window (the box whose size best fits it; ties: the
lower index).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from overfeat_jax import box_ops
from overfeat_jax.models.geometry import Geometry

MIN_COVERAGE = 0.5  # a window is trained on a box when more than this fraction of the box lies inside it


def coverage(boxes: jax.Array, windows: jax.Array) -> jax.Array:
  """Fraction of each box's area inside each window (broadcasting): 0 for zero-area boxes."""
  a = box_ops.area(boxes)
  return jnp.where(a > 0, box_ops.intersection(boxes, windows) / jnp.where(a > 0, a, 1.0), 0.0)


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
  iou = box_ops.iou(boxes[None, :, :], windows[:, None, :])
  ok = (cover > MIN_COVERAGE) & (labels >= 0)[None, :]  # [P, M]
  best = jnp.argmax(jnp.where(ok, iou, -1.0), axis=1).astype(jnp.int32)  # [P]; first max on ties
  positive = ok.any(axis=1)
  index = jnp.where(positive, best, 0)
  chosen = jnp.where(positive[:, None], boxes[index], 0.0)
  chosen_labels = jnp.where(positive, labels[index], -1).astype(jnp.int32)
  max_cover = jnp.where((labels >= 0)[None, :], cover, 0.0).max(axis=1, initial=0.0)
  return Assignment(positive, index, chosen, chosen_labels, max_cover)


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
  windows = box_ops.window_boxes(geometry, size, fine)  # [rows, cols, 4]
  rows, cols = windows.shape[:2]
  flat = windows.reshape(-1, 4)
  a = jax.vmap(lambda b, l: assign(flat, b, l))(boxes, labels)
  deltas = box_ops.encode(a.boxes, flat[None], geometry.input_size)
  deltas = jnp.where(a.positive[..., None], deltas, 0.0)
  batch = boxes.shape[0]
  return DenseTargets(windows, a.positive.reshape(batch, rows, cols), a.labels.reshape(batch, rows, cols),
                      deltas.reshape(batch, rows, cols, 4), a.max_coverage.reshape(batch, rows, cols))
