"""Photo-like test images made at test time: smooth waves plus noise, so that a JPEG of one carries real scan
data all the way down (a JPEG cut short then really loses rows; docs/data_imagenet.md "Truncated JPEGs")."""

import io

import numpy as np
from PIL import Image


def photo(width: int = 500, height: int = 375, seed: int = 0) -> np.ndarray:
  """uint8 [height, width, 3]; 500x375 is a typical ImageNet photo."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:height, 0:width]
  waves = np.stack([128 + 100 * np.sin(xx / 23 + c) * np.cos(yy / 17 - c) for c in range(3)], -1)
  return np.clip(waves + rng.normal(0, 25, (height, width, 3)), 0, 255).astype(np.uint8)


def photo_jpeg(width: int = 500, height: int = 375, seed: int = 0, **save) -> bytes:
  """`photo` as a quality-90 JPEG; `save` goes to Pillow (e.g. `exif=...`, `progressive=True`)."""
  buffer = io.BytesIO()
  Image.fromarray(photo(width, height, seed)).save(buffer, 'JPEG', quality=90, **save)
  return buffer.getvalue()
