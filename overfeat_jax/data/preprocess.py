"""Per-example preprocessing on the host (numpy + Pillow): the paper's training crops, the evaluation views.

Training (paper Section 3.1): the smaller side is resized to `resize_smaller` (256 for ImageNet), a random
`crop_size` square is cut (231 fast / 221 accurate / 64 for the demo) and flipped horizontally with
probability 1/2. Boxes follow the image. Evaluation views: `center_crop` (the release's classify mode:
smaller side to `size`, central square) and `resize` (the whole image resized to (h, w), one scale of
multi-scale evaluation).

Resampling is the one image path's (`images.resize`, its one filter: docs/ARCHITECTURE.md "One image path"):
`resize(box=...)` computes only the crop's output pixels (the filter still reads the pixels around the box, so
the result equals resize-then-crop). Training crops of JPEG bytes may also decode at reduced DCT scale (Pillow's
`draft`: libjpeg scales by 1/2, 1/4 or 1/8 when the resized image is at least that much smaller; 1.4x faster on a
2000x1500 photo, load 10); evaluation views never do, so every tool's view of an image is the same pixels.

Box rule for crops: a box is clipped to the crop and kept when at least `MIN_VISIBLE_FRACTION` (30%) of its
area (in the resized image) remains inside; below that, the visible sliver rarely shows the object's shape,
and training a regressor on it would teach boxes around fragments. Evaluation crops keep every box that
keeps any area, so ground truth is never silently dropped.

Per-example randomness comes from `example_rng(seed, epoch, index)`, so an example's crop and flip do not
depend on batching, sharding or worker count.

Training batches (`train_batch`) are built in place: each crop is written into its row of the batch buffer,
the boxes of the whole batch are mapped in one vectorised pass, and JPEG bytes stored at the training size
(ImageNet's resized256) decode through libjpeg-turbo with simplejpeg straight into numpy (`crop_into`),
with Pillow as the fallback for everything else (docs/data_pipeline.md has the measured costs)."""

import dataclasses
import functools
import hashlib
import io
import math
import struct
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from overfeat_jax.data import images as images_lib
from overfeat_jax.errors import InputError

try:  # libjpeg-turbo into numpy; optional: without it every image takes the Pillow path (same pixels).
  import simplejpeg  # pylint: disable=g-import-not-at-top
except ImportError:  # pragma: no cover - exercised only where the wheel is missing
  simplejpeg = None

MIN_VISIBLE_FRACTION = 0.3


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


class ExampleRandom:
  """The random stream of one example: draw k is BLAKE2b of (seed, epoch, index, k), uniform in [0, 1).

  It offers the two `np.random.Generator` methods the augmentation uses (`random`, `integers`), so
  `train_crop` takes either. Why not `np.random.default_rng([seed, epoch, index])`: seeding a Generator hashes
  through SeedSequence, ~35-50 us per example (measured), a tenth of the decode of a stored 341x256 JPEG; a
  keyed hash costs ~1.2 us per draw and, like it, depends on the example alone.
  """

  def __init__(self, seed: int, epoch: int, index: int):
    self._key = struct.pack('<3Q', seed, epoch, index)
    self._count = 0

  def random(self) -> float:
    """The next draw, uniform in [0, 1) with 53 random bits."""
    digest = hashlib.blake2b(self._key + struct.pack('<Q', self._count), digest_size=8).digest()
    self._count += 1
    return (int.from_bytes(digest, 'little') >> 11) * 2.0**-53

  def integers(self, low: int, high: int) -> int:
    """The next draw as an integer in [low, high) (like `Generator.integers`, high excluded)."""
    return low + int(self.random() * (high - low))


def example_rng(seed: int, epoch: int, index: int) -> ExampleRandom:
  """The random stream of one example in one epoch (independent of batching, sharding and workers).

  Args:
    seed, epoch, index: non-negative integers below 2**64 (the run's seed, the epoch, the record's index).
  """
  return ExampleRandom(seed, epoch, index)


def _resized_size(height: int, width: int, smaller: int | None, at_least: int = 0) -> tuple[int, int]:
  """(h, w) after resizing the smaller side to `smaller` (None: keep it), and to at least `at_least`."""
  target = max(smaller or min(height, width), at_least)
  if height <= width:
    return target, max(target, round(width * target / height))
  return max(target, round(height * target / width)), target


def train_crop(rng: ExampleRandom | np.random.Generator, height: int, width: int, *, crop_size: int,
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


def crop_image(image: np.ndarray | bytes, make_crop: Callable[[int, int], Crop],
               draft: bool = False) -> tuple[np.ndarray, Crop]:
  """Decodes (if bytes) and crops one image, resampled by `images.resize` (the one image path).

  Args:
    image: a decoded uint8 `[H, W, 3]` array, or encoded bytes (JPEG, PNG, ... anything Pillow reads).
    make_crop: (height, width) -> Crop; called once the size is known (for bytes, after reading the header).
    draft: training crops only: JPEG bytes decode at reduced DCT scale when the crop allows (module docstring).

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
  if draft and im.format == 'JPEG':
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
    out = Image.fromarray(images_lib.resize(im, (crop.h, crop.w), box=box))
  if crop.flip:  # In Pillow: a numpy copy of a reversed 3-channel view is ~10x slower (measured).
    out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
  return np.asarray(out)


def crop_into(out: np.ndarray, image: np.ndarray | bytes, make_crop: Callable[[int, int], Crop]) -> Crop:
  """Writes the crop of one image into `out` (uint8 `[crop.h, crop.w, 3]`, e.g. a row of a batch buffer).

  JPEG bytes (YCbCr or grayscale) that need no resampling (stored at the training size, as ImageNet's
  resized256) decode with libjpeg-turbo through simplejpeg straight into numpy: 1.3x Pillow's decode of the
  same file and the same pixels (libjpeg-turbo, accurate DCT, fancy upsampling both ways; bit-identical on
  every image measured, tests/data/test_preprocess.py). A flip decodes as BGR and reverses each row's bytes:
  reversed BGR bytes are the RGB pixels in mirrored order (`_mirror_rows`: reversed by 8-byte words, 3x numpy's
  byte-by-byte reversed copy). Everything else
  (arrays, other formats, CMYK, resampling, truncated or corrupt data, images above Pillow's size limit)
  takes `crop_image` (with `draft`: training crops), i.e. Pillow and the images module's decode policy.

  Args:
    out: where the crop goes; its shape must be `(crop.h, crop.w, 3)`.
    image: as for `crop_image`.
    make_crop: as for `crop_image`; called exactly once.

  Returns:
    the Crop used. Raises InputError for undecodable images (as `crop_image`).
  """
  size = _turbo_jpeg_size(image)
  if size is not None:
    crop = make_crop(*size)
    if crop.sx == crop.sy == 1.0:
      try:
        pixels = simplejpeg.decode_jpeg(image, 'BGR' if crop.flip else 'RGB', strict=True)
      except (ValueError, RuntimeError):  # truncated or corrupt: the Pillow path applies the decode policy
        pixels = None
      if pixels is not None:
        rows = pixels[crop.y0:crop.y0 + crop.h, crop.x0:crop.x0 + crop.w].reshape(crop.h, crop.w * 3)
        if crop.flip:
          _mirror_rows(rows, out.reshape(crop.h, crop.w * 3))
        else:
          out.reshape(crop.h, crop.w * 3)[...] = rows
        return crop
    make_crop = lambda h, w, known=crop: known  # The draws are spent: the fallback takes the same crop.
  pixels, crop = crop_image(image, make_crop, draft=True)
  out[...] = pixels
  return crop


def _mirror_rows(rows: np.ndarray, out: np.ndarray) -> None:
  """`out[i] = rows[i][::-1]` for uint8 `[h, n]` arrays (`rows` may be a strided view), reversed 8 bytes at a time.

  numpy copies a reversed uint8 view one byte at a time (~175 us for a 231x231x3 crop, measured); here each row is
  copied behind `-n % 8` pad bytes into 64-bit words, the words are reversed (all rows at once) while being
  byte-swapped into a big-endian array, and the rows are read back in reverse order: ~55 us, the same bytes.
  """
  h, n = rows.shape
  pad = -n % 8
  words = np.empty((h, (n + pad) // 8), '<u8')
  words.view(np.uint8)[:, pad:] = rows
  swapped = np.empty(words.shape, '>u8')
  np.copyto(swapped.reshape(-1), words.reshape(-1)[::-1])  # casting '<u8' to '>u8' swaps each word's bytes
  out[...] = swapped.view(np.uint8)[::-1, :n]


def _turbo_jpeg_size(image: np.ndarray | bytes) -> tuple[int, int] | None:
  """(height, width) when `image` is JPEG bytes that simplejpeg decodes as Pillow would, else None."""
  if simplejpeg is None or not isinstance(image, (bytes, bytearray)) or not image.startswith(b'\xff\xd8'):
    return None
  try:
    height, width, colorspace, _ = simplejpeg.decode_jpeg_header(image)
  except (ValueError, RuntimeError):
    return None
  max_pixels = Image.MAX_IMAGE_PIXELS
  if colorspace not in ('YCbCr', 'Gray') or (max_pixels is not None and height * width > max_pixels):
    return None
  return height, width


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
  mapped, keep = _map_boxes(np.asarray(boxes, np.float64).reshape(-1, 4), _crop_table([crop]), min_visible)
  return mapped[keep].reshape(-1, 4), np.asarray(labels, np.int32).reshape(-1)[keep]


def _crop_table(crops: Sequence[Crop]) -> np.ndarray:
  """float64 `[len(crops), 13]` for `_map_boxes`: scale (sx, sy, sx, sy), offset (x0, y0, x0, y0), size
  (w, h, w, h), flip (0 or 1)."""
  return np.array([(c.sx, c.sy, c.sx, c.sy, c.x0, c.y0, c.x0, c.y0, c.w, c.h, c.w, c.h, c.flip) for c in crops],
                  np.float64)


def _map_boxes(boxes: np.ndarray, table: np.ndarray, min_visible: float) -> tuple[np.ndarray, np.ndarray]:
  """Boxes float64 `[N, 4]` (x1, y1, x2, y2), each with its crop's row of `_crop_table` (`table` `[N or 1, 13]`)
  -> (float32 `[N, 4]` in the crop's pixels, clipped and flipped; bool `[N]`: kept by `transform_boxes`'s rule).
  """
  b = boxes * table[:, 0:4] - table[:, 4:8]
  area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
  c = np.clip(b, 0, table[:, 8:12])
  clipped = np.maximum(c[:, 2] - c[:, 0], 0) * np.maximum(c[:, 3] - c[:, 1], 0)
  keep = (clipped > 0) & (clipped >= min_visible * area)
  w = table[:, 8]
  flipped = np.stack([w - c[:, 2], c[:, 1], w - c[:, 0], c[:, 3]], axis=1)
  c = np.where(table[:, 12:13] > 0, flipped, c)
  return c.astype(np.float32), keep


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


def train_example(record: dict, rng: ExampleRandom | np.random.Generator, *, crop_size: int,
                  resize_smaller: int | tuple[int, int] | None, max_boxes: int) -> dict:
  """One record (docs/CONVENTIONS.md; `image` decoded or encoded) -> one training example of the batch format.

  `label` is -1 for records without one (the det datasets). The row of `train_batch([record], [rng], ...)`.
  """
  batch = train_batch([record], [rng], crop_size=crop_size, resize_smaller=resize_smaller, max_boxes=max_boxes)
  return {k: v[0] for k, v in batch.items()}


def train_batch(records: Sequence[dict], rngs: Sequence[ExampleRandom | np.random.Generator], *, crop_size: int,
                resize_smaller: int | tuple[int, int] | None, max_boxes: int, out: np.ndarray | None = None,
                scale: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
  """Records -> one training batch (docs/CONVENTIONS.md), record i cropped and flipped with `rngs[i]`, then the
  whole batch resized to `scale` when given (`resize_batch`: the per-batch training scale, `scale_of_batch`).

  Each crop is written into its row of the image buffer (`crop_into`), and the boxes of all records are
  mapped (`transform_boxes`' rule) and padded in one vectorised pass; records without boxes cost nothing
  there. Equal to stacking each record's crop and `transform_boxes` + `pad_boxes` (tested).

  Args:
    records: dicts with `image` (bytes or uint8 `[H, W, 3]`), `boxes` float `[N, 4]` (x1, y1, x2, y2 in the
      image's pixels), `box_labels` int `[N]` and optionally `label` (-1 when absent).
    rngs: one random stream per record (`example_rng`).
    crop_size, resize_smaller: as for `train_crop`.
    max_boxes: boxes per example (padded with zeros / -1; extra boxes dropped, first ones kept).
    out: uint8 `[len(records), h, w, 3]` to write the images into (e.g. shared memory), (h, w) = `scale` or
      (crop_size, crop_size); allocated when None.
    scale: (h, w) of the whole batch after the crops; None (or the crop's size) keeps the crops as they are.

  Returns:
    image uint8 `[B, h, w, 3]`, label int32 `[B]`, boxes float32 `[B, max_boxes, 4]` (in the batch's pixels),
    box_labels int32 `[B, max_boxes]`. Raises InputError for an undecodable image.
  """
  n, crop = len(records), (crop_size, crop_size)
  whole = scale is not None and tuple(scale) != crop
  images = out if out is not None and not whole else np.empty((n, *crop, 3), np.uint8)
  crops = [crop_into(images[i], record['image'], functools.partial(
      train_crop, rng, crop_size=crop_size, resize_smaller=resize_smaller))
           for i, (record, rng) in enumerate(zip(records, rngs))]
  boxes, box_labels = _batch_boxes(records, crops, max_boxes, MIN_VISIBLE_FRACTION)
  batch = {'image': images, 'label': np.array([r.get('label', -1) for r in records], np.int32),
           'boxes': boxes, 'box_labels': box_labels}
  return resize_batch(batch, scale, out=out) if whole else batch


def scale_of_batch(scales: Sequence[tuple[int, int]], batch_index: int) -> tuple[int, int] | None:
  """The per-batch training scale: batch `batch_index` (0-based, counted per shard, so every host's batch of
  one step has the same index) of a stream trains at `scales[batch_index % len(scales)]`: the scales in turn,
  each the same share of steps (the paper's multi-scale training, section 4.2; the localization stage's
  `box.train_scales`). None when `scales` is empty (the crops as they are)."""
  return tuple(scales[batch_index % len(scales)]) if len(scales) else None


def resize_batch(batch: dict[str, np.ndarray], size: tuple[int, int],
                 out: np.ndarray | None = None) -> dict[str, np.ndarray]:
  """A training batch (uint8 images `[B, H, W, 3]`, boxes in its pixels) resized to `size` (h, w): images
  (`images.resize`, the one filter, antialiased when shrinking, like the eval `resize` view) and boxes
  together; padding boxes stay zero. `out`: uint8 `[B, h, w, 3]` to write the images into (allocated when None).
  The batch itself when it already has that size."""
  images = np.asarray(batch['image'])
  height, width = images.shape[1:3]
  if (height, width) == tuple(size):
    return batch
  resized = np.empty((len(images), *size, 3), np.uint8) if out is None else out
  for i, im in enumerate(images):
    resized[i] = images_lib.resize(im, tuple(size))
  scale = np.asarray([size[1] / width, size[0] / height] * 2, np.float32)
  return {**batch, 'image': resized, 'boxes': (np.asarray(batch['boxes'], np.float32) * scale)}


def _batch_boxes(records: Sequence[dict], crops: Sequence[Crop], max_boxes: int,
                 min_visible: float) -> tuple[np.ndarray, np.ndarray]:
  """Every record's boxes through its crop, kept by the visible-area rule, the first `max_boxes` kept ones in
  its row: (float32 `[B, max_boxes, 4]` zero-padded, int32 `[B, max_boxes]` padded with -1)."""
  out_boxes = np.zeros((len(records), max_boxes, 4), np.float32)
  out_labels = np.full((len(records), max_boxes), -1, np.int32)
  counts = [len(r['boxes']) for r in records]
  if not sum(counts) or not max_boxes:
    return out_boxes, out_labels
  owner = np.repeat(np.arange(len(records)), counts)
  boxes = np.concatenate([np.asarray(r['boxes'], np.float64).reshape(-1, 4) for r in records])
  labels = np.concatenate([np.asarray(r['box_labels'], np.int32).reshape(-1) for r in records])
  mapped, keep = _map_boxes(boxes, _crop_table(crops)[owner], min_visible)
  owner, mapped, labels = owner[keep], mapped[keep], labels[keep]
  rank = np.arange(len(owner)) - np.searchsorted(owner, owner)  # position among its record's kept boxes
  first = rank < max_boxes
  out_boxes[owner[first], rank[first]] = mapped[first]
  out_labels[owner[first], rank[first]] = labels[first]
  return out_boxes, out_labels


def check_view_size(size: int, name: str) -> None:
  """Refuses an evaluation view (`eval_view`) larger than the images the tools read may be.

  A view of S x S pixels is made on the host (uint8, then resampled): S = 100,000 asked for 30 GB and was killed
  by the kernel's out-of-memory killer instead of reporting. The limit is Pillow's `Image.MAX_IMAGE_PIXELS` (the
  decompression-bomb limit every image read already obeys: 89,478,485 pixels, i.e. S <= 9,459), so a view is
  never larger than an image the tools would accept.

  Args:
    size: the square view's side in pixels.
    name: the flag or config field that set it, for the message (e.g. '--view_size').

  Raises:
    InputError: one line, when size * size is above the limit.
  """
  limit = Image.MAX_IMAGE_PIXELS
  if limit is not None and size * size > limit:
    raise InputError(f'{name}={size} asks for a {size}x{size} view ({size * size:,} pixels), above the '
                     f'{limit:,}-pixel limit of any image read (Pillow\'s MAX_IMAGE_PIXELS): use at most '
                     f'{math.isqrt(limit)}')


def eval_view(image: np.ndarray | bytes, view: str, size: int | tuple[int, int]) -> tuple[np.ndarray, Crop]:
  """The evaluation view of one image, the same pixels in every tool (docs/ARCHITECTURE.md "One image path").

  The eval pipeline, `predict` and `classify` all call this; it decodes bytes with Pillow (never a DCT draft)
  and resamples with `images.resize`.

  Args:
    image: encoded bytes or a decoded uint8 `[H, W, 3]` array.
    view: 'center_crop' (smaller side resized to `size`, central square: the release's classify view) or
      'resize' (the whole image resized to `size` = (h, w), or (size, size) for an int: the input of the
      multi-scale procedure, which resizes it to each scale on the device).
    size: see `view`.

  Returns:
    uint8 `[h, w, 3]` and the Crop used (to map boxes). Raises InputError for another view or an undecodable
    image.
  """
  if view == 'center_crop':
    make_crop = lambda h, w: center_crop(h, w, int(size))
  elif view == 'resize':
    if isinstance(size, int):
      size = (size, size)
    make_crop = lambda h, w: full_resize(h, w, tuple(size))
  else:
    raise InputError(f"Unknown evaluation view {view!r}; expected 'center_crop' or 'resize'.")
  return crop_image(image, make_crop)


def eval_example(record: dict, *, view: str, size: int | tuple[int, int], max_boxes: int) -> dict:
  """One record -> one evaluation example of `eval_view` (view 'center_crop', size: int; or 'resize').

  A record with `ignore_classes` (DET validation) also gives `ignore_classes` int32 `[max_boxes]`, padded with -1.
  A record with `ignore_boxes`/`ignore_labels` (own data: VOC difficult, COCO iscrowd) also gives them mapped like
  `boxes` and padded the same way (float32 `[max_boxes, 4]`, int32 `[max_boxes]` with -1), for the evaluation.
  """
  image, crop = eval_view(record['image'], view, size)
  example = _example(record, image, crop, max_boxes, 0.0)
  if 'ignore_classes' in record:  # the DET validation blacklist (data.imagenet_det), for the detection evaluation
    ignored = np.asarray(record['ignore_classes'], np.int32).reshape(-1)[:max_boxes]
    example['ignore_classes'] = np.concatenate([ignored, np.full(max_boxes - len(ignored), -1, np.int32)])
  if 'ignore_boxes' in record:  # own data (data.folders): not ground truth, not false positives (metrics.detection)
    ignored_boxes = _example({'boxes': record['ignore_boxes'], 'box_labels': record['ignore_labels']},
                             image, crop, max_boxes, 0.0)
    example['ignore_boxes'], example['ignore_labels'] = ignored_boxes['boxes'], ignored_boxes['box_labels']
  return example
