"""Per-example preprocessing on the host (numpy + Pillow): the paper's training crops, the evaluation views.

Training (paper Section 3.1): the smaller side is resized to `resize_smaller` (256 for ImageNet), a random
`crop_size` square is cut (231 fast / 221 accurate / 64 for the demo) and flipped horizontally with
probability 1/2. Boxes follow the image. Evaluation views: `center_crop` (the release's classify mode:
smaller side to `size`, central square) and `resize` (the whole image resized to (h, w), one scale of
multi-scale evaluation).

Speed: for JPEG bytes the crop is fused with decoding. Pillow's `draft` makes libjpeg scale by 1/2, 1/4 or
1/8 in the DCT domain when the resized image is at least that much smaller, and `resize(box=...)` computes
only the crop's output pixels (the filter still reads the pixels around the box, so the result equals
resize-then-crop). Arrays (already decoded records) take the same geometry through `resize(box=...)`.

Box rule for crops: a box is clipped to the crop and kept when at least `MIN_VISIBLE_FRACTION` (30%) of its
area (in the resized image) remains inside; below that, the visible sliver rarely shows the object's shape,
and training a regressor on it would teach boxes around fragments. Evaluation crops keep every box that
keeps any area, so ground truth is never silently dropped.

Per-example randomness comes from `example_rng(seed, epoch, index)`, so an example's crop and flip do not
depend on batching, sharding or worker count."""

import dataclasses
import io
from typing import Callable

import numpy as np
from PIL import Image

from overfeat_jax.data import images as images_lib
from overfeat_jax.errors import InputError

MIN_VISIBLE_FRACTION = 0.3
RESAMPLE = Image.BILINEAR  # Pillow's bilinear is antialiased when downscaling (support grows with the scale).


@dataclasses.dataclass(frozen=True)
class Crop:
  """Where the output comes from: the image is scaled by (sx, sy), then [x0, x0 + w) x [y0, y0 + h) is cut."""
  sx: float
  sy: float
  x0: int
  y0: int
  w: int
  h: int
  flip: bool = False


def example_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
  """The random stream of one example in one epoch (independent of batching and sharding)."""
  return np.random.default_rng([seed, epoch, index])


def _resized_size(height: int, width: int, smaller: int | None, at_least: int = 0) -> tuple[int, int]:
  """(h, w) after resizing the smaller side to `smaller` (None: keep it), and to at least `at_least`."""
  target = max(smaller or min(height, width), at_least)
  if height <= width:
    return target, max(target, round(width * target / height))
  return max(target, round(height * target / width)), target


def train_crop(rng: np.random.Generator, height: int, width: int, *, crop_size: int,
               resize_smaller: int | tuple[int, int] | None) -> Crop:
  """Random crop and flip of the training augmentation for an image of (height, width).

  `resize_smaller` is the smaller side before cropping: an int, None (keep the stored size), or a range
  (lo, hi) to draw it from uniformly per example (scale jitter: the network sees objects at the sizes that
  multi-scale evaluation shows it, including objects larger than its window). If the resized image's smaller
  side is below `crop_size`, the image is upscaled so that its smaller side equals `crop_size`.
  """
  if isinstance(resize_smaller, (tuple, list)):
    resize_smaller = int(rng.integers(resize_smaller[0], resize_smaller[1] + 1))
  rh, rw = _resized_size(height, width, resize_smaller, crop_size)
  x0 = int(rng.integers(0, rw - crop_size + 1))
  y0 = int(rng.integers(0, rh - crop_size + 1))
  flip = bool(rng.random() < 0.5)
  return Crop(rw / width, rh / height, x0, y0, crop_size, crop_size, flip)


def center_crop(height: int, width: int, size: int) -> Crop:
  """The release's classify view: smaller side resized to `size`, central square (offset (L - S) // 2)."""
  rh, rw = _resized_size(height, width, size)
  return Crop(rw / width, rh / height, (rw - size) // 2, (rh - size) // 2, size, size)


def full_resize(height: int, width: int, size: tuple[int, int]) -> Crop:
  """The whole image resized to `size` = (h, w): one scale of multi-scale evaluation."""
  h, w = size
  return Crop(w / width, h / height, 0, 0, w, h)


def crop_image(image: np.ndarray | bytes, make_crop: Callable[[int, int], Crop]) -> tuple[np.ndarray, Crop]:
  """Decodes (if bytes) and crops one image; JPEG bytes decode at reduced DCT scale when the crop allows.

  Args:
    image: a decoded uint8 `[H, W, 3]` array, or encoded bytes (JPEG, PNG, ... anything Pillow reads).
    make_crop: (height, width) -> Crop; called once the size is known (for bytes, after reading the header).

  Returns:
    the crop `[crop.h, crop.w, 3]` uint8 and the Crop used (to transform the boxes).
  """
  if isinstance(image, np.ndarray):
    crop = make_crop(*image.shape[:2])
    return _apply(Image.fromarray(image), crop, 1.0), crop
  try:
    im = Image.open(io.BytesIO(image))
  except Exception as e:  # Pillow raises several types for undecodable data.
    raise InputError(f'Cannot decode image bytes ({len(image)} bytes): {e}') from e
  width, height = im.size
  crop = make_crop(height, width)
  reduction = 1.0
  if im.format == 'JPEG':
    # Ask for the resized full image's size: libjpeg reduces by 2, 4 or 8 only while the result stays larger.
    drafted = im.draft('RGB', (max(1, int(width * crop.sx)), max(1, int(height * crop.sy))))
    if drafted is not None:
      reduction = width / drafted[1][2]  # Pillow returns (mode, (0, 0, width / scale, height / scale)).
  try:
    return _apply(im, crop, reduction), crop
  except OSError:  # a truncated (or corrupt) file: the one decode policy keeps it or raises InputError
    array, _ = images_lib.decode_bytes(image)
    return _apply(Image.fromarray(array), crop, 1.0), crop


def _apply(im: Image.Image, crop: Crop, reduction: float) -> np.ndarray:
  if im.mode != 'RGB':
    im = im.convert('RGB')  # Grayscale, CMYK and palette images become RGB.
  # The crop window in the (possibly DCT-reduced) decoded image's coordinates.
  kx, ky = 1.0 / (crop.sx * reduction), 1.0 / (crop.sy * reduction)
  if kx == ky == 1.0:  # Stored at the training size (e.g. ImageNet's resized256): a plain copy, no filter.
    out = im.crop((crop.x0, crop.y0, crop.x0 + crop.w, crop.y0 + crop.h))
  else:
    box = (crop.x0 * kx, crop.y0 * ky, (crop.x0 + crop.w) * kx, (crop.y0 + crop.h) * ky)
    out = im.resize((crop.w, crop.h), RESAMPLE, box=box)
  if crop.flip:  # In Pillow: a numpy copy of a reversed 3-channel view is ~10x slower (measured).
    out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
  return np.asarray(out)


def transform_boxes(boxes: np.ndarray, labels: np.ndarray, crop: Crop,
                    min_visible: float = MIN_VISIBLE_FRACTION) -> tuple[np.ndarray, np.ndarray]:
  """Maps boxes `[N, 4]` into the crop's coordinates, clips them and drops those mostly outside.

  Args:
    boxes: float `[N, 4]` (x1, y1, x2, y2) in the source image's pixels.
    labels: int `[N]`.
    crop: the crop applied to the image.
    min_visible: keep a box when (clipped area) >= min_visible * (area in the resized image) and the clipped
      area is positive; 0 keeps every box that keeps any area.

  Returns:
    boxes float32 `[M, 4]` in the crop's pixels (flipped when the crop is), labels int32 `[M]`.
  """
  b = np.asarray(boxes, np.float64).reshape(-1, 4) * [crop.sx, crop.sy, crop.sx, crop.sy]
  b -= [crop.x0, crop.y0, crop.x0, crop.y0]
  area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
  c = np.clip(b, 0, [crop.w, crop.h, crop.w, crop.h])
  clipped = np.maximum(c[:, 2] - c[:, 0], 0) * np.maximum(c[:, 3] - c[:, 1], 0)
  keep = (clipped > 0) & (clipped >= min_visible * area)
  c = c[keep]
  if crop.flip:
    c = np.stack([crop.w - c[:, 2], c[:, 1], crop.w - c[:, 0], c[:, 3]], axis=1)
  return c.astype(np.float32).reshape(-1, 4), np.asarray(labels, np.int32).reshape(-1)[keep]


def pad_boxes(boxes: np.ndarray, labels: np.ndarray, max_boxes: int) -> tuple[np.ndarray, np.ndarray, int]:
  """Pads to `max_boxes` (zeros / -1); keeps the first `max_boxes`. Returns boxes, labels, number dropped."""
  n = min(len(boxes), max_boxes)
  out_b = np.zeros((max_boxes, 4), np.float32)
  out_l = np.full((max_boxes,), -1, np.int32)
  out_b[:n], out_l[:n] = boxes[:n], labels[:n]
  return out_b, out_l, len(boxes) - n


def _example(record: dict, image: np.ndarray, crop: Crop, max_boxes: int, min_visible: float) -> dict:
  boxes, labels = transform_boxes(record['boxes'], record['box_labels'], crop, min_visible)
  boxes, labels, _ = pad_boxes(boxes, labels, max_boxes)
  return {'image': np.ascontiguousarray(image), 'label': np.int32(record.get('label', -1)), 'boxes': boxes,
          'box_labels': labels}


def check_resize_smaller(value: int | tuple[int, int] | None) -> int | tuple[int, int] | None:
  """A valid `resize_smaller` (see `train_crop`), or an InputError naming the problem."""
  if isinstance(value, (tuple, list)):
    if len(value) != 2 or not all(isinstance(v, int) for v in value) or not 0 < value[0] <= value[1]:
      raise InputError(f'A scale-jitter range must be two integers 0 < lo <= hi, got {value!r}.')
    return tuple(value)
  if value is not None and (not isinstance(value, int) or value <= 0):
    raise InputError(f'resize_smaller must be a positive integer, a (lo, hi) range or None, got {value!r}.')
  return value


def train_example(record: dict, rng: np.random.Generator, *, crop_size: int,
                  resize_smaller: int | tuple[int, int] | None, max_boxes: int) -> dict:
  """One record (docs/CONVENTIONS.md; `image` decoded or encoded) -> one training example of the batch format.

  `label` is -1 for records without one (the det datasets).
  """
  image, crop = crop_image(record['image'], lambda h, w: train_crop(
      rng, h, w, crop_size=crop_size, resize_smaller=resize_smaller))
  return _example(record, image, crop, max_boxes, MIN_VISIBLE_FRACTION)


def eval_example(record: dict, *, view: str, size: int | tuple[int, int], max_boxes: int) -> dict:
  """One record -> one evaluation example: view 'center_crop' (size: int) or 'resize' (size: (h, w))."""
  if view == 'center_crop':
    make_crop = lambda h, w: center_crop(h, w, int(size))
  elif view == 'resize':
    if isinstance(size, int):
      size = (size, size)
    make_crop = lambda h, w: full_resize(h, w, tuple(size))
  else:
    raise InputError(f"Unknown evaluation view {view!r}; expected 'center_crop' or 'resize'.")
  image, crop = crop_image(record['image'], make_crop)
  return _example(record, image, crop, max_boxes, 0.0)
