"""Numpy box utilities for the host-side metrics, in the project's box convention (docs/CONVENTIONS.md).

Project boxes are `(x1, y1, x2, y2)` with pixel `i` covering `[i, i + 1)`, area `(x2 - x1) * (y2 - y1)`. The
ILSVRC devkits use 1-based inclusive pixel boxes `(xmin, ymin, xmax, ymax)`, area `(xmax - xmin + 1) * (ymax -
ymin + 1)`, intersection width `min(xmax) - max(xmin) + 1`. With `x1 = xmin - 1, x2 = xmax` the areas AND the
intersections are equal term by term (`min(x2) - max(x1) = min(xmax) - max(xmin) + 1`), so the project IoU
below is the devkit IoU exactly: no `+ 1` anywhere in the metrics, conversion only at the border
(`from_devkit`, `to_devkit`). Computations are float64; inverted boxes count as empty; IoU with an empty union
is 0.
"""

import numpy as np

from overfeat_jax.errors import InputError


def as_boxes(boxes, name: str = 'boxes') -> np.ndarray:
  """`boxes` as a float64 `[N, 4]` array; raises InputError on a wrong shape or non-finite values."""
  arr = np.asarray(boxes, np.float64)
  if arr.size == 0:
    return arr.reshape(0, 4)
  if arr.ndim != 2 or arr.shape[1] != 4:
    raise InputError(f'{name} must have shape [N, 4], got {arr.shape}.')
  if not np.isfinite(arr).all():
    raise InputError(f'{name} contains NaN or infinite coordinates.')
  return arr


def from_devkit(boxes) -> np.ndarray:
  """1-based inclusive devkit/XML boxes `[N, 4]` -> project boxes (`x1 = xmin - 1, x2 = xmax`)."""
  arr = np.array(boxes, np.float64).reshape(-1, 4)
  arr[:, :2] -= 1.0
  return arr


def to_devkit(boxes) -> np.ndarray:
  """Project boxes `[N, 4]` -> 1-based inclusive devkit boxes (`xmin = x1 + 1, xmax = x2`)."""
  arr = np.array(boxes, np.float64).reshape(-1, 4)
  arr[:, :2] += 1.0
  return arr


def area(boxes: np.ndarray) -> np.ndarray:
  """Area of `boxes [..., 4]` (0 when inverted)."""
  w = np.maximum(boxes[..., 2] - boxes[..., 0], 0.0)
  h = np.maximum(boxes[..., 3] - boxes[..., 1], 0.0)
  return w * h


def pairwise_intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Intersection areas of `a [N, 4]` with `b [M, 4]` -> `[N, M]`."""
  a, b = a[:, None, :], b[None, :, :]
  iw = np.maximum(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0.0)
  ih = np.maximum(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0.0)
  return iw * ih


def pairwise_iou(a, b) -> np.ndarray:
  """IoU of every box of `a [N, 4]` with every box of `b [M, 4]` -> `[N, M]` in [0, 1]."""
  a, b = as_boxes(a, 'a'), as_boxes(b, 'b')
  inter = pairwise_intersection(a, b)
  union = area(a)[:, None] + area(b)[None, :] - inter
  with np.errstate(divide='ignore', invalid='ignore'):
    iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
  return np.clip(iou, 0.0, 1.0)
