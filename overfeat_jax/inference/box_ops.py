"""Box arithmetic in jnp for the on-device inference path (merge, NMS), in the project's box convention.

Boxes are `(x1, y1, x2, y2)` float pixel coordinates, pixel `i` covering `[i, i + 1)` (docs/CONVENTIONS.md),
so the area is `(x2 - x1) * (y2 - y1)` with no `+ 1`. An inverted box (`x2 < x1` or `y2 < y1`) has zero width
or height and therefore zero area: the ops never produce negative areas or NaNs for finite inputs. All
functions broadcast over leading dimensions, so the same code gives elementwise (`[N, 4]` with `[N, 4]`) and
pairwise (`[N, 1, 4]` with `[1, M, 4]`) results. The operation order is fixed and mirrored by
`merge_reference.py`, so float32 results agree bit for bit with a sequential implementation: products that
feed an addition go through `rounded`, because XLA (on CPU and GPU) otherwise fuses `a * b + c` into one
fused multiply-add, which rounds once instead of twice and turns exact ties of the greedy merge into 1-ulp
differences.
"""

import jax
import jax.numpy as jnp


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
