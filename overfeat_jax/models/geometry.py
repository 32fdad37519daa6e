"""Layer geometry of the OverFeat networks: what the paper's Tables 1 and 3 say, as data.

A `Geometry` fixes everything about a network except its parameters: the convolution stages (channels, kernel,
stride, zero padding, pooling), the widths of the classifier layers, the training input size and the input
normalisation. Everything else (the fully connected kernel size, the strides, the spatial size of every layer,
parameter and multiply-add counts, the release tool's layer numbering) is derived from it, so that a small
variant for 64-pixel images keeps OverFeat's structure: a classifier made of convolutions, and a last k x k
pooling whose offsets give the fine output stride.
"""

import dataclasses
import math
import numbers

from overfeat_jax.errors import InputError

# The release's preprocessing: one mean and one standard deviation for all channels (spec section 2).
RELEASE_MEAN = 118.380948
RELEASE_STD = 61.896913


@dataclasses.dataclass(frozen=True)
class ConvStage:
  """One feature layer: [zero pad] -> conv (valid) -> ReLU -> [k x k max pool, stride k]."""
  features: int
  kernel: int
  stride: int = 1
  pad: int = 0
  pool: int = 0  # 0 = no pooling

  def out_size(self, size: int) -> tuple[int, int]:
    """Spatial size after the convolution, and after the pooling (floor: the remainder is dropped)."""
    conv = (size + 2 * self.pad - self.kernel) // self.stride + 1
    return conv, (conv // self.pool if self.pool else conv)


@dataclasses.dataclass(frozen=True)
class Geometry:
  """A whole network's shape. The last stage must pool: that pooling is the offset (Δx, Δy) pooling."""
  name: str
  input_size: int  # training window (square); the classifier's kernel covers layer 5 at this size
  stages: tuple[ConvStage, ...]
  hidden: tuple[int, ...]  # widths of the hidden classifier layers (dropout follows each)
  mean: float = RELEASE_MEAN
  std: float = RELEASE_STD

  def __post_init__(self):
    if not self.stages or not self.stages[-1].pool:
      raise ValueError(f'{self.name}: the last stage must pool (it is the offset pooling).')
    size = self.input_size
    for i, stage in enumerate(self.stages):
      conv, size = stage.out_size(size)
      if conv < 1 or size < 1:
        raise ValueError(f'{self.name}: input {self.input_size} collapses to {conv} at stage {i + 1}.')

  # --- derived facts -------------------------------------------------------------------------------
  @property
  def offset_pool(self) -> int:
    """k of the last k x k pooling: there are k*k offsets."""
    return self.stages[-1].pool

  @property
  def coarse_stride(self) -> int:
    """Input pixels between neighbouring output cells without offset pooling (fast 32, accurate 36)."""
    return math.prod(s.stride * (s.pool or 1) for s in self.stages)

  @property
  def fine_stride(self) -> int:
    """Output stride with offset pooling: coarse / k (fast 16, accurate 12)."""
    return self.coarse_stride // self.offset_pool

  @property
  def fc_kernel(self) -> int:
    """Kernel of the first classifier convolution: the pooled layer-5 map at the training input size."""
    return self.pooled_size(self.input_size)

  @property
  def layer5_channels(self) -> int:
    return self.stages[-1].features

  @property
  def feature_layers(self) -> int:
    """Number of convolution stages; the classifier layers are numbered after them (fast: fc6..fc8)."""
    return len(self.stages)

  def fc_names(self) -> tuple[str, ...]:
    n = self.feature_layers
    return tuple(f'fc{n + 1 + i}' for i in range(len(self.hidden) + 1))

  def unpooled_size(self, size: int) -> int:
    """Spatial size of the last conv stage's output (before the offset pooling) for an input size."""
    for stage in self.stages[:-1]:
      _, size = stage.out_size(size)
    return self.stages[-1].out_size(size)[0]

  def pooled_size(self, size: int) -> int:
    return self.unpooled_size(size) // self.offset_pool

  def output_size(self, size: int, fine: bool = False) -> int:
    """Classifier map size along one axis: coarse (Δ = 0) or interleaved fine map (all offsets)."""
    k, unpooled = self.offset_pool, self.unpooled_size(size)
    offsets = range(k) if fine else (0,)
    # offset d pools (unpooled - d) // k cells; the classifier's kernel covers fc_kernel of them
    return sum(max((unpooled - d) // k - self.fc_kernel + 1, 0) for d in offsets)

  def min_input_size(self) -> int:
    """Smallest input that gives one output cell (the training size's value for the default geometries)."""
    size = 1
    while self.output_size(size) < 1:
      size += 1
    return size

  def scaled(self, width_divisor: int, name: str | None = None) -> 'Geometry':
    """The same layout with every width divided (the CPU tests' and demos' small networks)."""
    div = lambda c: max(1, c // width_divisor)
    return dataclasses.replace(
        self, name=name or f'{self.name}/{width_divisor}',
        stages=tuple(dataclasses.replace(s, features=div(s.features)) for s in self.stages),
        hidden=tuple(div(h) for h in self.hidden))

  def layer_sizes(self, size: int, num_classes: int) -> list[tuple[str, int, int]]:
    """(name, channels, spatial size) of every layer in the release's order, for one square input size."""
    out = [('input', 3, size)]
    channels = 3
    for i, stage in enumerate(self.stages, start=1):
      if stage.pad:
        out.append((f'pad{i}', channels, size + 2 * stage.pad))
      conv, pooled = stage.out_size(size)
      channels = stage.features
      out += [(f'conv{i}', channels, conv), (f'relu{i}', channels, conv)]
      if stage.pool:
        out.append((f'pool{i}', channels, pooled))
      size = pooled
    widths = self.hidden + (num_classes,)
    for j, (name, width) in enumerate(zip(self.fc_names(), widths)):
      size = size - (self.fc_kernel if j == 0 else 1) + 1
      out.append((name, width, size))
      if j < len(self.hidden):
        out.append((f'relu{name[2:]}', width, size))
    out.append(('softmax', num_classes, size))
    return out

  def layer_names(self) -> list[str]:
    """The release tool's layer numbering (`-L n`): index n is `layer_names()[n]`."""
    return [name for name, _, _ in self.layer_sizes(self.input_size, 1)]

  def param_count(self, num_classes: int) -> int:
    total, channels = 0, 3
    for stage in self.stages:
      total += stage.features * (channels * stage.kernel ** 2 + 1)
      channels = stage.features
    kernels = [self.fc_kernel] + [1] * len(self.hidden)
    for kernel, width in zip(kernels, self.hidden + (num_classes,)):
      total += width * (channels * kernel ** 2 + 1)
      channels = width
    return total

  def multiply_adds(self, height: int, width: int, num_classes: int) -> dict[str, int]:
    """Multiply-adds per layer for one image of (height, width), without offset pooling."""
    out, channels, h, w = {}, 3, height, width
    for i, stage in enumerate(self.stages, start=1):
      (ch, ph), (cw, pw) = stage.out_size(h), stage.out_size(w)
      out[f'conv{i}'] = ch * cw * stage.features * channels * stage.kernel ** 2
      channels, h, w = stage.features, ph, pw
    kernels = [self.fc_kernel] + [1] * len(self.hidden)
    for name, kernel, width_ in zip(self.fc_names(), kernels, self.hidden + (num_classes,)):
      h, w = h - kernel + 1, w - kernel + 1
      out[name] = max(h, 0) * max(w, 0) * width_ * channels * kernel ** 2
      channels = width_
    return out


# Paper Table 1 ("fast", 231 x 231) and Table 3 ("accurate", 221 x 221).
FAST = Geometry(
    name='fast', input_size=231,
    stages=(ConvStage(96, 11, stride=4, pool=2), ConvStage(256, 5, pool=2), ConvStage(512, 3, pad=1),
            ConvStage(1024, 3, pad=1), ConvStage(1024, 3, pad=1, pool=2)),
    hidden=(3072, 4096))

ACCURATE = Geometry(
    name='accurate', input_size=221,
    stages=(ConvStage(96, 7, stride=2, pool=3), ConvStage(256, 7, pool=2), ConvStage(512, 3, pad=1),
            ConvStage(512, 3, pad=1), ConvStage(1024, 3, pad=1), ConvStage(1024, 3, pad=1, pool=3)),
    hidden=(4096, 4096))

# OverFeat's structure for 64-pixel images (ENV_NOTES section 5): 64 -> 29 -> 14 -> 10 -> 5 -> 5 -> 5 -> 2 -> 1.
# Coarse stride 16, fine stride 8, a 2 x 2 offset pooling and a 2 x 2 "fully connected" convolution.
SMALL = Geometry(
    name='small', input_size=64,
    stages=(ConvStage(96, 7, stride=2, pool=2), ConvStage(256, 5, pool=2), ConvStage(512, 3, pad=1),
            ConvStage(1024, 3, pad=1), ConvStage(1024, 3, pad=1, pool=2)),
    hidden=(3072, 4096))

# One explicit registry (no decorators): name -> geometry at full width.
GEOMETRIES = {'fast': FAST, 'accurate': ACCURATE, 'small': SMALL}


def get_geometry(name: str, width_divisor: int = 1) -> Geometry:
  """A registered geometry, optionally with every width divided (e.g. `small` / 8 for the CPU demo).

  Raises InputError (a ValueError too) for an unknown name or a `width_divisor` that is not a positive integer
  (0 divided by zero; a negative one made every layer 1 channel wide).
  """
  if name not in GEOMETRIES:
    raise InputError(f'unknown network {name!r}; choose one of {sorted(GEOMETRIES)}.')  # a ValueError too
  if isinstance(width_divisor, bool) or not isinstance(width_divisor, numbers.Integral) or width_divisor < 1:
    raise InputError(f'width_divisor must be a positive integer (1: the paper\'s widths), got {width_divisor!r}')
  geometry = GEOMETRIES[name]
  return geometry if width_divisor == 1 else geometry.scaled(width_divisor)
