"""Box and window geometry in jnp: the one home of the on-device box math (training targets, inference).

Boxes are `(x1, y1, x2, y2)` float pixel coordinates, pixel `i` covering `[i, i + 1)` (docs/CONVENTIONS.md),
so the area is `(x2 - x1) * (y2 - y1)` with no `+ 1`. An inverted box (`x2 < x1` or `y2 < y1`) has zero width
or height and therefore zero area: the ops never produce negative areas or NaNs for finite inputs. All
functions broadcast over leading dimensions, so the same code gives elementwise (`[N, 4]` with `[N, 4]`) and
pairwise (`[N, 1, 4]` with `[1, M, 4]`) results. `metrics/boxes.py` is the float64 numpy twin used by the
host-side metrics (and the only place of the devkit's `+ 1` shift); tests/test_box_ops.py checks that both
give the same IoU.

Fused multiply-add guard: the operation order is fixed and mirrored by the sequential test oracle
(tests/inference/merge_reference.py), so float32 results agree bit for bit with it: products that feed an
addition go through `rounded`, because XLA (on CPU and GPU) otherwise fuses `a * b + c` into one fused
multiply-add, which rounds once instead of twice and turns exact ties of the greedy merge into 1-ulp
differences.

Windows (paper sections 4.2 and 5): cell (r, c) of a dense map at stride `s` (the coarse stride, or the fine
stride of the interleaved offset-pooled map) is the network applied to the training-size window whose top-left
pixel is (r * s, c * s) in the image AS FED TO THE NETWORK (after resizing to one scale); its size is
`geometry.input_size` (the classifier's training crop: 64 for `small`, 231 fast, 221 accurate).

Box encoding (scale free): edges relative to the window's top-left corner, divided by the window size:
`t = ((x1 - wx) / S, (y1 - wy) / S, (x2 - wx) / S, (y2 - wy) / S)`. A box equal to the window is (0, 0, 1, 1)
at every scale, so one L2 loss serves all scales. `decode` inverts it; `to_image` divides by the scale factors
to get back to the original image's pixels and clips to the image.
"""

import jax
import jax.numpy as jnp

from overfeat_jax.models.geometry import Geometry


def rounded(product: jax.Array) -> jax.Array:
  """Returns `product` rounded to float32 on its own, i.e. never contracted into a fused multiply-add.

  The select is a no-op for every value (NaN included) but stands between the multiply and the following add,
  so the compiler cannot fuse them; it stays inside the same loop fusion, so it costs nothing measurable.
  """
  return jnp.where(product == product, product, product * 0.0)


def widths_heights(boxes: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Width and height of `boxes [..., 4]`, clamped at 0 so inverted boxes count as empty."""
  w = jnp.maximum(boxes[..., 2] - boxes[..., 0], 0.0)
  h = jnp.maximum(boxes[..., 3] - boxes[..., 1], 0.0)
  return w, h


def area(boxes: jax.Array) -> jax.Array:
  """Area of `boxes [..., 4]` -> `[...]` (0 for empty or inverted boxes)."""
  w, h = widths_heights(boxes)
  return rounded(w * h)


def centers(boxes: jax.Array) -> jax.Array:
  """Centre `(cx, cy)` of `boxes [..., 4]` -> `[..., 2]`."""
  cx = (boxes[..., 0] + boxes[..., 2]) * 0.5
  cy = (boxes[..., 1] + boxes[..., 3]) * 0.5
  return jnp.stack([cx, cy], axis=-1)


def center_distance(a: jax.Array, b: jax.Array) -> jax.Array:
  """Euclidean distance between the centres of `a [..., 4]` and `b [..., 4]` (broadcasting)."""
  ca, cb = centers(a), centers(b)
  dx = ca[..., 0] - cb[..., 0]
  dy = ca[..., 1] - cb[..., 1]
  return jnp.sqrt(rounded(dx * dx) + rounded(dy * dy))


def intersection(a: jax.Array, b: jax.Array) -> jax.Array:
  """Intersection area of `a [..., 4]` and `b [..., 4]` (broadcasting); 0 when they do not overlap."""
  iw = jnp.maximum(jnp.minimum(a[..., 2], b[..., 2]) - jnp.maximum(a[..., 0], b[..., 0]), 0.0)
  ih = jnp.maximum(jnp.minimum(a[..., 3], b[..., 3]) - jnp.maximum(a[..., 1], b[..., 1]), 0.0)
  return rounded(iw * ih)


def iou(a: jax.Array, b: jax.Array) -> jax.Array:
  """Intersection over union of `a [..., 4]` and `b [..., 4]` (broadcasting), in [0, 1].

  Defined as 0 when the union is empty (two zero-area boxes), so IoU(b, b) = 1 only for positive-area `b`.
  """
  inter = intersection(a, b)
  union = area(a) + area(b) - inter
  safe = jnp.where(union > 0, union, 1.0)
  return jnp.clip(jnp.where(union > 0, inter / safe, 0.0), 0.0, 1.0)


def pairwise_iou(a: jax.Array, b: jax.Array) -> jax.Array:
  """IoU of every box of `a [N, 4]` with every box of `b [M, 4]` -> `[N, M]`."""
  return iou(a[:, None, :], b[None, :, :])


def diagonal(boxes: jax.Array) -> jax.Array:
  """Length of the diagonal of `boxes [..., 4]` (0 for empty boxes)."""
  w, h = widths_heights(boxes)
  return jnp.sqrt(rounded(w * w) + rounded(h * h))


def clip(boxes: jax.Array, height: jax.Array | float, width: jax.Array | float) -> jax.Array:
  """Clips `boxes [..., 4]` to the image `[0, width] x [0, height]` (a box fully outside becomes empty)."""
  x1 = jnp.clip(boxes[..., 0], 0.0, width)
  y1 = jnp.clip(boxes[..., 1], 0.0, height)
  x2 = jnp.clip(boxes[..., 2], 0.0, width)
  y2 = jnp.clip(boxes[..., 3], 0.0, height)
  return jnp.stack([x1, y1, x2, y2], axis=-1)


def scale_boxes(boxes: jax.Array, scale_xy: tuple[float, float]) -> jax.Array:
  """Boxes [..., 4] of an image -> the same boxes in the image resized by (sx, sy)."""
  sx, sy = scale_xy
  return boxes * jnp.asarray([sx, sy, sx, sy], jnp.float32)


def to_image(boxes: jax.Array, scale_xy: tuple[float, float], image_hw: tuple[float, float]) -> jax.Array:
  """Boxes in a resized image's pixels -> the original image's pixels (divide by the scale), clipped to it.

  Args:
    boxes: [..., 4] in the resized image.
    scale_xy: (sx, sy) = resized width / original width, resized height / original height.
    image_hw: (height, width) of the original image; predictions outside it are clipped to its border.

  Returns:
    [..., 4] boxes with x1 <= x2 and y1 <= y2: a regressor that crossed its edges gives an empty box.
  """
  sx, sy = scale_xy
  b = clip(boxes / jnp.asarray([sx, sy, sx, sy], jnp.float32), image_hw[0], image_hw[1])
  x2, y2 = jnp.maximum(b[..., 2], b[..., 0]), jnp.maximum(b[..., 3], b[..., 1])
  return jnp.stack([b[..., 0], b[..., 1], x2, y2], axis=-1)


# --- windows of a dense map and the window-relative encoding ------------------------------------------------
def stride(geometry: Geometry, fine: bool) -> int:
  """Input pixels between neighbouring cells of a dense map: fine (offset pooled) or coarse."""
  return geometry.fine_stride if fine else geometry.coarse_stride


def map_size(geometry: Geometry, size: tuple[int, int], fine: bool) -> tuple[int, int]:
  """(rows, cols) of the dense map for an input of (height, width)."""
  return geometry.output_size(size[0], fine), geometry.output_size(size[1], fine)


def window_boxes(geometry: Geometry, size: tuple[int, int], fine: bool) -> jax.Array:
  """The input window of each cell of the dense map of a (height, width) input: [rows, cols, 4] (x1, y1, x2, y2).
  """
  rows, cols = map_size(geometry, size, fine)
  s, w = stride(geometry, fine), geometry.input_size
  y = jnp.arange(rows, dtype=jnp.float32) * s
  x = jnp.arange(cols, dtype=jnp.float32) * s
  yy, xx = jnp.meshgrid(y, x, indexing='ij')
  return jnp.stack([xx, yy, xx + w, yy + w], axis=-1)


def encode(boxes: jax.Array, windows: jax.Array, window_size: float) -> jax.Array:
  """Boxes [..., 4] -> window-relative targets [..., 4] (edges minus the window's corner, over its size)."""
  corner = jnp.concatenate([windows[..., :2], windows[..., :2]], axis=-1)
  return (boxes - corner) / window_size


def decode(deltas: jax.Array, windows: jax.Array, window_size: float) -> jax.Array:
  """Inverse of `encode`: window-relative [..., 4] -> boxes [..., 4] in the windows' pixels."""
  corner = jnp.concatenate([windows[..., :2], windows[..., :2]], axis=-1)
  return rounded(deltas * window_size) + corner
