"""An independent NumPy forward pass of the OverFeat release, in the release's own layout (tests only).

Why: the JAX networks and `release_weights` must reproduce the release layer by layer. This reference shares
no code with them: it reads the raw float32 file itself, keeps activations as (C, H, W), applies weights as
Torch does (cross-correlation with (out, in, kh, kw) kernels, no flip), has zero padding, ReLU, floor max
pooling and softmax as modules of their own, and numbers the modules as the release's `-L` index does
(0 = the normalised input). It computes in float64 and is slow: use it at small widths only.
From a `Geometry` it reads only the stage table (channels, kernel, stride, pad, pool), the hidden widths and
the training input size; the classifier's kernel size and every spatial size are derived here again.
"""

import numpy as np

MEAN = 118.380948  # the release's preprocessing (spec section 2), restated rather than imported
STD = 61.896913


def modules(geometry, num_classes: int) -> list[tuple]:
  """The release's module list: ('input',), ('pad', p), ('conv', out, in, k, stride), ('relu',), ('pool', k)..."""
  out, channels, size = [('input',)], 3, geometry.input_size
  for stage in geometry.stages:
    if stage.pad:
      out.append(('pad', stage.pad))
      size += 2 * stage.pad
    out += [('conv', stage.features, channels, stage.kernel, stage.stride), ('relu',)]
    size = (size - stage.kernel) // stage.stride + 1
    channels = stage.features
    if stage.pool:
      out.append(('pool', stage.pool))
      size //= stage.pool
  kernel = size  # the first "fully connected" layer covers the whole pooled map at the training size
  for width in geometry.hidden:
    out += [('conv', width, channels, kernel, 1), ('relu',)]
    channels, kernel = width, 1
  out += [('conv', num_classes, channels, kernel, 1), ('softmax',)]
  return out


def read_weights(path: str, geometry, num_classes: int) -> list[tuple[np.ndarray, np.ndarray]]:
  """(weight (out, in, kh, kw), bias (out,)) per convolution, read sequentially from the raw file."""
  flat = np.fromfile(path, dtype='<f4')
  layers, offset = [], 0
  for module in modules(geometry, num_classes):
    if module[0] != 'conv':
      continue
    _, out, inp, k, _ = module
    count = out * inp * k * k
    layers.append((flat[offset:offset + count].reshape(out, inp, k, k).astype(np.float64),
                   flat[offset + count:offset + count + out].astype(np.float64)))
    offset += count + out
  if offset != flat.size:
    raise ValueError(f'file holds {flat.size} floats, the network {offset}')
  return layers


def conv(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int) -> np.ndarray:
  """Valid cross-correlation: x (C, H, W), weight (O, C, k, k) -> (O, H', W')."""
  k = weight.shape[-1]
  windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))[:, ::stride, ::stride]
  return np.einsum('oikl,ihwkl->ohw', weight, windows, optimize=True) + bias[:, None, None]


def max_pool(x: np.ndarray, k: int) -> np.ndarray:
  """Non-overlapping k x k max pooling; the right/bottom remainder that does not fill a window is dropped."""
  c, h, w = x.shape
  x = x[:, :h // k * k, :w // k * k]
  return x.reshape(c, h // k, k, w // k, k).max(axis=(2, 4))


def softmax(x: np.ndarray) -> np.ndarray:
  """Softmax over channels at every location."""
  e = np.exp(x - x.max(axis=0, keepdims=True))
  return e / e.sum(axis=0, keepdims=True)


def forward(image: np.ndarray, geometry, weights, num_classes: int) -> list[np.ndarray]:
  """Every module's output for one uint8 (H, W, 3) RGB image, in release numbering: (C, H, W) float64 arrays."""
  x = (image.astype(np.float64).transpose(2, 0, 1) - MEAN) / STD
  outputs, layers = [x], iter(weights)
  for module in modules(geometry, num_classes)[1:]:
    kind = module[0]
    if kind == 'pad':
      p = module[1]
      x = np.pad(x, ((0, 0), (p, p), (p, p)))
    elif kind == 'conv':
      weight, bias = next(layers)
      x = conv(x, weight, bias, module[4])
    elif kind == 'relu':
      x = np.maximum(x, 0.0)
    elif kind == 'pool':
      x = max_pool(x, module[1])
    else:
      x = softmax(x)
    outputs.append(x)
  return outputs


def center_square(image: np.ndarray) -> np.ndarray:
  """The release's crop of an already resized image: the central square, offset (long - short) // 2."""
  h, w = image.shape[:2]
  s = min(h, w)
  top, left = (h - s) // 2, (w - s) // 2
  return image[top:top + s, left:left + s]
