"""A corpus of bad (and oddly valid) input files, written into a directory at test time: nothing binary is
committed. Each entry says whether a correct program may accept it (`valid`) or must refuse it.

  python -m tests.bad_input.corpus /tmp/bad_corpus     # writes the files and prints their names
"""

import dataclasses
import io
import os
import sys
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image


@dataclasses.dataclass(frozen=True)
class Case:
  name: str  # file name in the corpus directory (the extension is part of the lie for some)
  valid: bool  # a decoder that handles the real world must accept it
  write: Callable[[Path], None]


def _rgb(width: int, height: int, seed: int = 0) -> Image.Image:
  rng = np.random.default_rng(seed)
  return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), 'RGB')


def _jpeg_bytes(image: Image.Image) -> bytes:
  buf = io.BytesIO()
  image.save(buf, 'JPEG', quality=90)
  return buf.getvalue()


def _save(image: Image.Image, fmt: str) -> Callable[[Path], None]:
  return lambda path: image.save(path, fmt)


def _bytes(data: bytes) -> Callable[[Path], None]:
  return lambda path: path.write_bytes(data)


def _truncated(path: Path) -> None:
  data = _jpeg_bytes(_rgb(120, 90))
  path.write_bytes(data[:len(data) // 2])


def _corrupt(path: Path) -> None:
  """A JPEG header (SOI + JFIF APP0) followed by noise: the decoder starts, then fails."""
  data = _jpeg_bytes(_rgb(120, 90))
  rng = np.random.default_rng(1)
  path.write_bytes(data[:20] + rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())


IMAGES = (
    Case('truncated.JPEG', False, _truncated),
    Case('corrupt.JPEG', False, _corrupt),
    Case('empty.JPEG', False, _bytes(b'')),
    Case('text.JPEG', False, _bytes(b'this is not an image\n')),
    Case('png_named.JPEG', True, _save(_rgb(100, 80), 'PNG')),
    Case('cmyk.JPEG', True, _save(_rgb(100, 80).convert('CMYK'), 'JPEG')),
    Case('gray.JPEG', True, _save(_rgb(100, 80).convert('L'), 'JPEG')),
    Case('rgba.png', True, _save(_rgb(100, 80).convert('RGBA'), 'PNG')),
    Case('one_pixel.JPEG', True, _save(_rgb(1, 1), 'JPEG')),
    Case('wide_4000x3.JPEG', True, _save(_rgb(4000, 3), 'JPEG')),
    Case('tall_3x4000.JPEG', True, _save(_rgb(3, 4000), 'JPEG')),
)


def _sparse(size: int) -> Callable[[Path], None]:
  """A file of `size` bytes that occupies no disk (a hole): reading it would take minutes, checking its size
  takes microseconds."""
  def write(path: Path) -> None:
    with open(path, 'wb') as f:
      f.truncate(size)
  return write


WEIGHTS = (
    Case('weights_wrong_size', False, _bytes(np.zeros(1000, np.float32).tobytes())),
    Case('weights_empty', False, _bytes(b'')),
    Case('weights_dir', False, lambda path: path.mkdir()),
    Case('weights_sparse_10g', False, _sparse(10 * 2**30)),
)

CONFIGS = (
    Case('config_not_python.py', False, _bytes(b'this is { not python\n')),
    Case('config_raises.py', False,
         _bytes(b'def get_config():\n  raise RuntimeError("a config that fails when loaded")\n')),
    Case('config_no_get_config.py', False, _bytes(b'X = 1\n')),
    Case('config_missing.py', False, lambda path: None),  # never written: a path that does not exist
)

ALL = IMAGES + WEIGHTS + CONFIGS


def write_corpus(directory: str | os.PathLike) -> dict[str, Path]:
  """Writes every case into `directory`; returns {name: path}."""
  directory = Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  paths = {}
  for case in ALL:
    path = directory / case.name
    case.write(path)
    paths[case.name] = path
  return paths


if __name__ == '__main__':
  for name, p in write_corpus(sys.argv[1]).items():
    print(name, p)
