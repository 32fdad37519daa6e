"""What the classify command feeds the network: the release's views of an image, batched by size.

Why a module of its own: the release tool's classification view (smaller side resized to 231, central square)
must be reproduced exactly and testably, and the command's speed depends on batching: every distinct input
shape is one compiled program, and a batch padded to a fixed size never recompiles.

Every view is `data.preprocess.eval_view`, the one image path the trainer's evaluation, `sweep` and `predict`
use too (docs/ARCHITECTURE.md "One image path"): Pillow's bilinear filter, antialiased when it shrinks (like
ImageMagick's `-resize`). The release's wrapper used ImageMagick (`convert -resize 231x231^`, a Lanczos filter
when shrinking, Mitchell when enlarging), so pixel values of resized images differ slightly between the two (a
few grey levels at edges); images whose smaller side already is 231 are not resized and match the release
exactly.
"""

import dataclasses
from typing import Iterable, Iterator

import numpy as np
from overfeat_jax.data.preprocess import eval_view
from overfeat_jax.errors import InputError
from overfeat_jax.models.geometry import Geometry

RELEASE_VIEW_SIZE = 231  # the release resizes to 231 for both networks (accurate's output is 1x1 for 221..231)


def view_size(geometry: Geometry) -> int:
  """The top-N view's side: 231 (the release's, for both paper networks) if it gives a 1x1 output, else the
  network's own training size (e.g. the 64-pixel `small` network)."""
  if geometry.output_size(RELEASE_VIEW_SIZE) == 1:
    return RELEASE_VIEW_SIZE
  return geometry.input_size


def crop_offsets(height: int, width: int) -> tuple[int, int]:
  """(top, left) of the central square: `(long - short) // 2` along the long side, 0 along the short one."""
  short = min(height, width)
  return (height - short) // 2, (width - short) // 2


def release_view(image: np.ndarray, size: int = RELEASE_VIEW_SIZE) -> np.ndarray:
  """uint8 [H, W, 3] -> uint8 [size, size, 3]: smaller side resized to `size`, central square at
  `crop_offsets` (the eval pipeline's `center_crop` view, `eval_view`)."""
  return eval_view(image, 'center_crop', size)[0]


def multiscale_view(image: np.ndarray, size: int) -> np.ndarray:
  """uint8 [H, W, 3] -> uint8 [size, size, 3]: the whole image resized to the multi-scale procedure's input
  view (aspect not kept; the eval pipeline's `resize` view, `eval_view`); each scale is then resized from it on
  the device (`inference.multiscale`), as in the trainer's evaluation, `sweep` and `predict`."""
  return eval_view(image, 'resize', size)[0]


def check_feature_size(image: np.ndarray, geometry: Geometry, name: str) -> None:
  """Feature mode runs the whole network on the unresized image: both sides must reach its minimum input."""
  minimum = geometry.min_input_size()
  height, width = image.shape[:2]
  if min(height, width) < minimum:
    raise InputError(f'image {name} is {width}x{height} pixels, but the {geometry.name} network\'s feature mode '
                     f'needs at least {minimum}x{minimum} (it does not resize)')


@dataclasses.dataclass(frozen=True)
class Batch:
  """A fixed-size batch: `images` [batch_size, H, W, 3] uint8, of which the first `len(indices)` are real."""
  images: np.ndarray
  indices: tuple[int, ...]


def _padded(group: list[tuple[int, np.ndarray]], batch_size: int) -> Batch:
  first = group[0][1]
  images = np.zeros((batch_size,) + first.shape, dtype=first.dtype)
  for row, (_, image) in enumerate(group):
    images[row] = image
  return Batch(images, tuple(index for index, _ in group))


def batches_by_size(items: Iterable[tuple[int, np.ndarray]], batch_size: int) -> Iterator[Batch]:
  """Groups (index, image) pairs by image shape into batches of exactly `batch_size` (zero-padded).

  Streams: a batch is yielded as soon as its shape group is full, so with one shape (the top-N mode) the
  network can run on one batch while the next is being decoded; partial groups are flushed at the end.
  """
  if batch_size < 1:
    raise InputError(f'batch size must be at least 1, not {batch_size}')
  groups: dict[tuple[int, ...], list[tuple[int, np.ndarray]]] = {}
  for index, image in items:
    group = groups.setdefault(image.shape, [])
    group.append((index, image))
    if len(group) == batch_size:
      yield _padded(group, batch_size)
      group.clear()
  for group in groups.values():
    if group:
      yield _padded(group, batch_size)
