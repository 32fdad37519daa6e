"""The original OverFeat release's weight files (`net_weight_0` = fast, `net_weight_1` = accurate), both ways.

Why: the release is the only trained OverFeat there is; reading its files lets the JAX networks reproduce its
outputs (and lets a network trained here be used with the release's tools). Layout (spec section 2): raw
little-endian float32, no header; for each parametrised layer in order, the weight as (out, in, kh, kw) in C
order, then the bias (out). The "fully connected" layers are stored the same way, with (kh, kw) the classifier's
first kernel (fast 6x6, accurate 5x5) and 1x1 after, which is exactly this project's FC-as-conv layout.

Flax convolution kernels are (kh, kw, in, out) (HWIO); both sides compute cross-correlation (the Torch and XLA
convention), so a kernel only needs the axis transpose (out, in, kh, kw) -> (kh, kw, in, out), never a flip.
The file is read through `np.memmap` (the fast file is 584 MB, and its size is checked before anything is
read): the transpose reads it once, straight into the Flax layout, and nothing is unpickled.
"""

import os
import tempfile
from typing import Any, Iterator

import numpy as np

from overfeat_jax.errors import InputError
from overfeat_jax.models.geometry import ACCURATE, FAST, Geometry

# The two release files and the network each belongs to, for the size check's hint.
RELEASE_FILES = {'fast': ('net_weight_0', FAST), 'accurate': ('net_weight_1', ACCURATE)}
RELEASE_CLASSES = 1000
_DTYPE = np.dtype('<f4')
_OIHW_TO_HWIO = (2, 3, 1, 0)
_HWIO_TO_OIHW = (3, 2, 0, 1)


def release_layers(geometry: Geometry, num_classes: int) -> Iterator[tuple[str, str, tuple[int, int, int, int]]]:
  """(flax scope, layer name, (out, in, kh, kw)) of every parametrised layer, in the file's order."""
  channels = 3
  for i, stage in enumerate(geometry.stages, start=1):
    yield 'features', f'conv{i}', (stage.features, channels, stage.kernel, stage.kernel)
    channels = stage.features
  kernels = [geometry.fc_kernel] + [1] * len(geometry.hidden)
  for name, kernel, width in zip(geometry.fc_names(), kernels, geometry.hidden + (num_classes,)):
    yield 'classifier', name, (width, channels, kernel, kernel)
    channels = width


def expected_bytes(geometry: Geometry, num_classes: int = RELEASE_CLASSES) -> int:
  """Size of a release-layout file for the geometry: 4 bytes per parameter, nothing else."""
  return _DTYPE.itemsize * geometry.param_count(num_classes)


def check_file_size(path: str | os.PathLike, geometry: Geometry, num_classes: int = RELEASE_CLASSES) -> None:
  """Raises `InputError` unless the file exists and has exactly the geometry's size (checked before reading)."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise InputError(f'weight file {path} does not exist or is not a regular file')
  size, expected = os.path.getsize(path), expected_bytes(geometry, num_classes)
  if size == expected:
    return
  hint = ''
  for network, (file_name, other) in RELEASE_FILES.items():
    if other.name != geometry.name and size == expected_bytes(other, RELEASE_CLASSES):
      hint = f'; this looks like the {network} network\'s file ({file_name}): use --model={network}'
  raise InputError(f'weight file {path} has {size:,} bytes but the {geometry.name} network with {num_classes} '
                   f'classes needs {expected:,} bytes{hint}')


def read_release_arrays(path: str | os.PathLike, geometry: Geometry,
                        num_classes: int = RELEASE_CLASSES) -> dict[str, Any]:
  """The file's layers as read-only `np.memmap` views in the file's own (out, in, kh, kw) layout: no copy at all.

  Why: the fast file is 584 MB; the classify command hands these views to the device and transposes there
  (`to_flax_layout` under `jax.jit`), which is faster than a strided NumPy transpose. Size checked first.
  """
  check_file_size(path, geometry, num_classes)
  flat = np.memmap(os.fspath(path), dtype=_DTYPE, mode='r')
  arrays: dict[str, Any] = {'features': {}, 'classifier': {}}
  offset = 0
  for scope, name, shape in release_layers(geometry, num_classes):
    count = int(np.prod(shape))
    arrays[scope][name] = {'kernel': flat[offset:offset + count].reshape(shape),
                           'bias': flat[offset + count:offset + count + shape[0]]}
    offset += count + shape[0]
  return arrays


def to_flax_layout(arrays: Any) -> Any:
  """(out, in, kh, kw) kernels -> Flax (kh, kw, in, out); biases unchanged. Works on NumPy and JAX arrays."""
  return {scope: {name: {'kernel': layer['kernel'].transpose(_OIHW_TO_HWIO), 'bias': layer['bias']}
                  for name, layer in layers.items()} for scope, layers in arrays.items()}


def load_release_weights(path: str | os.PathLike, geometry: Geometry,
                         num_classes: int = RELEASE_CLASSES) -> dict[str, Any]:
  """Reads a release-layout file into the `OverFeat` params tree (float32 NumPy arrays, Flax HWIO kernels).

  Args:
    path: the weight file (e.g. the release's `net_weight_0` for `FAST`).
    geometry: the network the file belongs to (any width: the size check uses its parameter count).
    num_classes: outputs of the last layer (the release: 1000).

  Raises:
    InputError: the file is missing or its size is not the geometry's (the message names the expected size).
  """
  views = to_flax_layout(read_release_arrays(path, geometry, num_classes))
  return {scope: {name: {key: np.ascontiguousarray(value, dtype=np.float32) for key, value in layer.items()}
                  for name, layer in layers.items()} for scope, layers in views.items()}


def random_params(geometry: Geometry, num_classes: int = RELEASE_CLASSES, seed: int = 0) -> dict[str, Any]:
  """Params of the release's shapes with N(0, 0.01) kernels (the paper's initialisation) and zero biases.

  For trying the tools and timing them without the release's files; drawn with NumPy, which is much faster on
  a CPU than JAX's threefry for the fast network's 146 M values.
  """
  rng = np.random.default_rng(seed)
  params: dict[str, Any] = {'features': {}, 'classifier': {}}
  for scope, name, (out, inp, kh, kw) in release_layers(geometry, num_classes):
    kernel = rng.standard_normal((kh, kw, inp, out), dtype=np.float32)
    kernel *= 0.01
    params[scope][name] = {'kernel': kernel, 'bias': np.zeros((out,), np.float32)}
  return params


def _layer_arrays(params: Any, geometry: Geometry, num_classes: int) -> Iterator[np.ndarray]:
  """The arrays of `params` in file order and layout, after checking every shape against the geometry."""
  for scope, name, shape in release_layers(geometry, num_classes):
    try:
      layer = params[scope][name]
      kernel, bias = np.asarray(layer['kernel']), np.asarray(layer['bias'])
    except (KeyError, TypeError):
      raise InputError(f'params have no {scope}/{name} kernel and bias for the {geometry.name} network') from None
    hwio = tuple(shape[i] for i in _OIHW_TO_HWIO)
    if kernel.shape != hwio or bias.shape != (shape[0],):
      raise InputError(f'{scope}/{name}: kernel {kernel.shape} and bias {bias.shape} do not match the '
                       f'{geometry.name} network ({hwio} and ({shape[0]},))')
    yield kernel.transpose(_HWIO_TO_OIHW)
    yield bias


def save_release_weights(params: Any, geometry: Geometry, path: str | os.PathLike) -> int:
  """Writes `params` in the release layout, atomically (a temporary file in the same folder, then rename).

  The number of classes is read from the last layer's bias. Returns the number of bytes written.
  """
  try:
    num_classes = int(np.shape(params['classifier'][geometry.fc_names()[-1]]['bias'])[0])
  except (KeyError, TypeError, IndexError):
    raise InputError(f'params have no classifier/{geometry.fc_names()[-1]} bias for the {geometry.name} '
                     'network') from None
  path = os.fspath(path)
  folder = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.tmp', dir=folder)
  try:
    with os.fdopen(fd, 'wb') as f:
      for array in _layer_arrays(params, geometry, num_classes):
        f.write(np.ascontiguousarray(array, dtype=_DTYPE).tobytes())
    umask = os.umask(0)  # storage.new_file_mode's rule; the models layer imports nothing above `errors`
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make the file private
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return os.path.getsize(path)
