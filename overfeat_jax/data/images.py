"""Robust image decoding (Pillow) for the dataset builders and CLIs, and encoding for tfds storage.

Why its own module: ImageNet has a PNG stored as `.JPEG`, CMYK JPEGs, grayscale JPEGs and (in user data)
palette/alpha PNGs; every reader of images must turn them into the same uint8 RGB array and must fail with one
clear sentence (and a machine-readable reason the builders count) on missing, empty, truncated or corrupt
files.

Colour rules (documented in docs/data_imagenet.md):
  * CMYK, YCbCr, LAB, bilevel and 8-bit grayscale: Pillow's conversion to RGB (Pillow undoes Adobe's inverted
    CMYK JPEGs itself); grayscale becomes three equal channels.
  * 16-/32-bit grayscale (`I;16`, `I`, `F`): scaled to 0..255 by the range of its type, then as grayscale.
  * Anything with transparency (RGBA, LA, PA, palette with a transparent index): composited over WHITE, not
    black: transparent pixels carry arbitrary colours, and a white page is what a viewer shows.
Truncated JPEGs (the one decode policy, used by the builders, `classify`, `predict` and the training pipeline;
docs/data_imagenet.md "Truncated JPEGs"): a JPEG whose file ends early is decoded as libjpeg decodes it, i.e.
as Pillow does with `ImageFile.LOAD_TRUNCATED_IMAGES` (bit-identical, measured), but per call: an end-of-image
marker is appended to the bytes, so no process-wide flag is touched. libjpeg fills what the data did not reach
with uniform gray (128); the rows at the bottom that are entirely that gray are the missing rows. An image with
at most `MAX_MISSING_FRACTION` of its rows missing is kept (repair `truncated_repaired`); one with more is
refused (reason `truncated`). Other formats that end early are refused (`truncated`).
EXIF orientation is ignored unless asked for (`exif_transpose=True`): ILSVRC's boxes refer to the stored pixels.
tfds writes bytes and PIL images without TensorFlow but needs TF for ndarrays (ENV_NOTES section 6), so
`encode_for_storage` always returns JPEG bytes: the file's own bytes when it already is a valid RGB JPEG and
is stored unchanged, a re-encoding (quality 95) otherwise.
"""

import dataclasses
import io
import os
from typing import Union

import numpy as np
from PIL import Image, ImageOps

from overfeat_jax.errors import InputError

Source = Union[str, os.PathLike, bytes]
JPEG_QUALITY = 95  # For re-encoded (repaired or resized) images: visually lossless, ~3x smaller than PNG.
# A truncated JPEG is kept when at most this fraction of its rows is missing (all gray at the bottom): ~1 MCU row
# (16 px) of a 375-row ImageNet photo is 4 %; half or a third of a file is ~50-65 % missing (docs/data_imagenet.md).
MAX_MISSING_FRACTION = 0.05
ORIENTATION_TAG = 0x0112  # EXIF Orientation (1 = as stored, 6 = rotate 90 degrees clockwise to view)
_EOI = b'\xff\xd9'  # JPEG end-of-image marker
# What libjpeg writes where the entropy-coded data ran out (zero DCT coefficients): 128, which Pillow shows as 127
# in an (Adobe-inverted) CMYK JPEG.
_FILLS = (128, 127)


class ImageDecodeError(InputError):
  """An unusable image.

  `reason` is one of missing, empty, not_an_image, truncated, corrupt, too_small, too_large.
  """

  def __init__(self, reason: str, message: str):
    super().__init__(message)
    self.reason = reason


@dataclasses.dataclass(frozen=True)
class Decoded:
  """A decoded image as RGB plus what it was on disk, so builders can count repairs and keep valid bytes."""
  image: Image.Image         # mode 'RGB', fully loaded
  raw: bytes                 # the file's bytes
  source_format: str         # Pillow's format name: 'JPEG', 'PNG', ...
  source_mode: str           # Pillow's mode before conversion: 'RGB', 'CMYK', 'L', 'P', ...
  repairs: tuple[str, ...]   # what was done to make it RGB, e.g. ('cmyk_to_rgb',)
  orientation: int = 1       # the file's EXIF orientation tag (1: as stored; 5-8: a quarter turn to view)

  @property
  def size(self) -> tuple[int, int]:
    """(width, height) in pixels."""
    return self.image.size


def _read(source: Source, name: str) -> bytes:
  if isinstance(source, (bytes, bytearray)):
    data = bytes(source)
  else:
    path = os.fspath(source)
    if not os.path.exists(path):
      raise ImageDecodeError('missing', f'image {name} does not exist')
    if os.path.isdir(path):
      raise ImageDecodeError('not_an_image', f'image {name} is a directory, not an image file')
    with open(path, 'rb') as f:
      data = f.read()
  if not data:
    raise ImageDecodeError('empty', f'image {name} is empty (0 bytes)')
  return data


def _load(data: bytes, name: str) -> Image.Image:
  try:
    image = Image.open(io.BytesIO(data))
  except Image.DecompressionBombError as e:
    raise ImageDecodeError('too_large', f'image {name} is too large to decode safely ({e})') from None
  except (Image.UnidentifiedImageError, OSError, SyntaxError, ValueError):
    raise ImageDecodeError('not_an_image', f'{name} is not an image Pillow can read') from None
  try:
    image.load()
  except Image.DecompressionBombError as e:
    raise ImageDecodeError('too_large', f'image {name} is too large to decode safely ({e})') from None
  except (OSError, SyntaxError, ValueError, IndexError, EOFError) as e:
    if 'truncat' in str(e).lower() or isinstance(e, EOFError):
      raise ImageDecodeError('truncated', f'image {name} is truncated (the file ends early)') from None
    raise ImageDecodeError('corrupt', f'image {name} is corrupt ({type(e).__name__}: {e})') from None
  return image


def missing_rows(image: Image.Image) -> int:
  """Rows at the bottom of a decoded truncated JPEG that the data never reached: every channel of every pixel
  exactly libjpeg's fill value (128; 127 in Pillow's inverted CMYK)."""
  array = np.asarray(image).reshape(image.size[1], -1)  # [H, W * channels]
  return max(int(np.cumprod((array == fill).all(axis=1)[::-1]).sum()) for fill in _FILLS)


def _open(data: bytes, name: str) -> tuple[Image.Image, tuple[str, ...]]:
  """Decodes `data`; a truncated JPEG by the module's policy. Returns the image and ('truncated_repaired',) or ()."""
  try:
    return _load(data, name), ()
  except ImageDecodeError as e:
    if e.reason != 'truncated' or not data.startswith(b'\xff\xd8'):
      raise
  image = _load(data + _EOI, name)  # what libjpeg (and LOAD_TRUNCATED_IMAGES) decodes, without a global flag
  missing, height = missing_rows(image), image.size[1]
  if missing > MAX_MISSING_FRACTION * height:
    raise ImageDecodeError('truncated', f'image {name} is truncated: the file ends early and {missing} of its '
                                        f'{height} rows are missing (at most {MAX_MISSING_FRACTION:.0%} may be)')
  return image, ('truncated_repaired',)


def _white_composite(image: Image.Image) -> Image.Image:
  rgba = image.convert('RGBA')
  page = Image.new('RGBA', rgba.size, (255, 255, 255, 255))
  return Image.alpha_composite(page, rgba).convert('RGB')


def _wide_gray_to_l(image: Image.Image) -> Image.Image:
  array = np.asarray(image)
  if image.mode == 'F':
    top = max(float(array.max()), 1e-12) if array.size else 1.0
    scaled = np.clip(array / top, 0.0, 1.0) * 255.0
  else:  # I;16 (0..65535) or I (int32): scale by the type's range of non-negative values
    top = 65535.0 if image.mode.startswith('I;16') or array.max(initial=0) <= 65535 else float(array.max())
    scaled = np.clip(array.astype(np.float64) / top, 0.0, 1.0) * 255.0
  return Image.fromarray(np.round(scaled).astype(np.uint8), mode='L')


def _to_rgb(image: Image.Image) -> tuple[Image.Image, tuple[str, ...]]:
  """Converts any Pillow mode to RGB by the module's colour rules; returns the repairs done."""
  mode = image.mode
  if mode == 'RGB':
    return image, ()
  has_alpha = mode in ('RGBA', 'LA', 'PA', 'RGBa', 'La') or (mode == 'P' and 'transparency' in image.info)
  if has_alpha:
    return _white_composite(image), ('alpha_composited_on_white',)
  if mode in ('I;16', 'I;16B', 'I;16L', 'I', 'F'):
    return _wide_gray_to_l(image).convert('RGB'), ('wide_grayscale_to_rgb',)
  repair = {'CMYK': 'cmyk_to_rgb', 'L': 'grayscale_to_rgb', '1': 'grayscale_to_rgb', 'P': 'palette_to_rgb'}
  return image.convert('RGB'), (repair.get(mode, f'{mode.lower()}_to_rgb'),)


def decode(source: Source, *, name: str | None = None, min_size: int | None = None,
           exif_transpose: bool = False) -> Decoded:
  """Reads and fully decodes an image (path or bytes) into RGB.

  Args:
    source: a path, or the file's bytes (e.g. a tar member).
    name: how to call the image in messages and in the `png_named_jpeg` check (defaults to the path).
    min_size: if given, images whose smaller side is below it are rejected (`too_small`).
    exif_transpose: rotate/mirror by the EXIF orientation tag (repair `exif_transposed` when it changed the
      image); off by default, since ILSVRC's boxes refer to the stored pixel grid.

  Raises:
    ImageDecodeError (an InputError) with a one-sentence message and a `reason`; a truncated JPEG with more
    than `MAX_MISSING_FRACTION` of its rows missing is `truncated`, one with fewer is kept (`truncated_repaired`).
  """
  name = name or (os.fspath(source) if not isinstance(source, (bytes, bytearray)) else '<bytes>')
  data = _read(source, name)
  image, repairs = _open(data, name)
  source_format, source_mode = image.format or 'unknown', image.mode
  orientation = image.getexif().get(ORIENTATION_TAG, 1)
  if exif_transpose and orientation != 1:
    image, repairs = ImageOps.exif_transpose(image), repairs + ('exif_transposed',)
  if min_size is not None and min(image.size) < min_size:
    w, h = image.size
    raise ImageDecodeError('too_small', f'image {name} is {w}x{h} pixels, smaller than the minimum side of '
                                        f'{min_size}')
  rgb, converted = _to_rgb(image)
  repairs += converted
  if source_format != 'JPEG' and name.lower().endswith(('.jpeg', '.jpg')):
    repairs = (f'{source_format.lower()}_named_jpeg',) + repairs
  return Decoded(image=rgb, raw=data, source_format=source_format, source_mode=source_mode, repairs=repairs,
                 orientation=orientation)


def load_rgb(source: Source, *, min_size: int | None = None, exif_transpose: bool = False) -> np.ndarray:
  """Returns the image as uint8 [H, W, 3] RGB; raises `InputError` (one sentence) on any unusable file."""
  return np.asarray(decode(source, min_size=min_size, exif_transpose=exif_transpose).image, dtype=np.uint8)


def decode_bytes(data: bytes, name: str = '<bytes>') -> tuple[np.ndarray, bool]:
  """The decode policy for encoded bytes (e.g. a tfds record): (uint8 [H, W, 3] RGB, repaired).

  `repaired` is True for a truncated JPEG kept by the policy. Raises `ImageDecodeError` (an InputError) for
  unusable bytes, including a JPEG with more than `MAX_MISSING_FRACTION` of its rows missing.
  """
  decoded = decode(data, name=name)
  return np.asarray(decoded.image, dtype=np.uint8), 'truncated_repaired' in decoded.repairs


# The one image filter of every tool (docs/ARCHITECTURE.md "One image path"): the triangle (bilinear) filter,
# antialiased when shrinking (Pillow widens its support by the scale factor), the same filter family as the
# device's per-scale resize (`inference.multiscale.resize_images`: `jax.image.resize`, 'linear', antialias).
RESAMPLE = Image.Resampling.BILINEAR
# Stored records only (the builders' `smaller_side`): a data format, kept as built (`resized_smaller_side`).
BUILD_RESAMPLE = Image.Resampling.BICUBIC


def resize(image: np.ndarray | Image.Image, size: tuple[int, int],
           box: tuple[float, float, float, float] | None = None) -> np.ndarray:
  """The one host-side resize of every tool: uint8 [H, W, 3] (or a Pillow image) -> uint8 [h, w, 3].

  Args:
    image: RGB pixels, uint8 [H, W, 3], or a Pillow RGB image.
    size: (h, w) output size in pixels; the aspect ratio is not kept (a scale of the multi-scale procedure).
    box: optional (x0, y0, x1, y1) source region in input pixels (continuous; Pillow's `resize(box=...)`): only
      that region is resampled to `size`, with the filter reading the pixels around it, so a crop of the
      resized image equals the resize of the matching box.

  Filter: `RESAMPLE` (triangle/bilinear, antialiased when shrinking; half-pixel centres). Returns the input
  unchanged (as an array) when it already has `size` and no box is given. Source: paper section 3.3 resizes
  the whole image to each scale; the filter is this project's choice (the release tool used ImageMagick).
  """
  im = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, np.uint8))
  height, width = size
  if box is None and im.size == (width, height):
    return np.asarray(im)
  return np.asarray(im.resize((width, height), RESAMPLE, box=box))


def resized_smaller_side(image: Image.Image, size: int) -> Image.Image:
  """Resizes so that the smaller side is exactly `size` (aspect kept, long side rounded); `BUILD_RESAMPLE`.

  Used only by the dataset builders (`encode_for_storage`): the stored records (e.g. ImageNet's resized256) are a
  data format, so their filter (bicubic) stays what the records were built with; every tool reading images
  afterwards uses `resize`. Up- and down-scaling alike: the paper trains on images whose smallest dimension is
  256, and a fixed short side makes every 231/221 training crop valid.
  """
  w, h = image.size
  if min(w, h) == size:
    return image
  if w <= h:
    new = (size, max(1, round(h * size / w)))
  else:
    new = (max(1, round(w * size / h)), size)
  return image.resize(new, resample=BUILD_RESAMPLE)


@dataclasses.dataclass(frozen=True)
class Stored:
  """Bytes for tfds plus how pixel coordinates changed (x_new = x * scale_x), for the boxes."""
  data: bytes
  width: int
  height: int
  scale_x: float
  scale_y: float
  reencoded: bool


def encode_for_storage(decoded: Decoded, *, smaller_side: int | None = None,
                       quality: int = JPEG_QUALITY) -> Stored:
  """Bytes that tfds stores without TensorFlow: original JPEG bytes when valid RGB JPEG and not resized.

  Args:
    decoded: the output of `decode`.
    smaller_side: resize so that the smaller side is this many pixels (None: keep the size).
    quality: JPEG quality of re-encoded images.
  """
  image = decoded.image
  if smaller_side is not None:
    image = resized_smaller_side(image, smaller_side)
  w0, h0 = decoded.size
  w, h = image.size
  keep = (image is decoded.image and decoded.source_format == 'JPEG' and decoded.source_mode == 'RGB'
          and not decoded.repairs)  # a repaired file's own bytes are what was repaired (truncated, rotated)
  if keep:
    data = decoded.raw
  else:
    buffer = io.BytesIO()
    image.save(buffer, format='JPEG', quality=quality)
    data = buffer.getvalue()
  return Stored(data=data, width=w, height=h, scale_x=w / w0, scale_y=h / h0, reencoded=not keep)
