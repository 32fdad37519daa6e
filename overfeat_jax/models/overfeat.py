"""The OverFeat networks as pure-functional Flax modules.

`OverFeat` = `Features` (layers 1-5, up to the unpooled output of the last convolution) -> the last k x k max
pooling -> `ClassifierHead` (the "fully connected" layers, realised as convolutions so that one pass over a large
image evaluates every window). Dense evaluation with offset pooling (`overfeat_jax.inference.dense`) calls
`OverFeat.unpooled` once and `OverFeat.head` once per offset; the box regressor (`heads.BoxRegressor`) reads the
same pooled layer-5 maps.

Every module records its layers' outputs with `sow('intermediates', name, x)` under the release tool's layer
names (`Geometry.layer_names()`), so any layer can be returned by name (`layer_outputs`). Layout is NHWC; the
release's (C, H, W) layout is a transpose at the border (`overfeat_jax.models.release_weights`).
"""

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from overfeat_jax.models.geometry import Geometry

Dtype = Any
LAYER_PREFIX = 'out:'


def kernel_initializer(init: str) -> Callable:
  """'paper': N(0, 0.01) as in the paper (section 3.1); 'he': variance scaling, which small nets train faster with."""
  if init == 'paper':
    return nn.initializers.normal(stddev=0.01)
  if init == 'he':
    return nn.initializers.variance_scaling(2.0, 'fan_in', 'normal')
  raise ValueError(f"unknown init {init!r}; use 'paper' or 'he'.")


def record(module: nn.Module, name: str, x: jax.Array) -> None:
  """Keeps a layer's output under its release name (prefixed: sow names must not clash with submodules)."""
  module.sow('intermediates', LAYER_PREFIX + name, x)


def max_pool(x: jax.Array, k: int) -> jax.Array:
  """Non-overlapping k x k max pooling, stride k; the right/bottom remainder is dropped (as the release does)."""
  return nn.max_pool(x, (k, k), strides=(k, k), padding='VALID')


class Features(nn.Module):
  """Normalisation and layers 1..n of the geometry, without the last (offset) pooling. [B,H,W,3] -> [B,h,w,C5]."""
  geometry: Geometry
  dtype: Dtype = jnp.float32
  init_scheme: str = 'paper'

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    g = self.geometry
    x = (images.astype(jnp.float32) - g.mean) / g.std  # [B, H, W, 3], pixel values 0..255 in
    record(self, 'input', x)
    x = x.astype(self.dtype)
    for i, stage in enumerate(g.stages, start=1):
      if stage.pad:
        x = jnp.pad(x, ((0, 0), (stage.pad, stage.pad), (stage.pad, stage.pad), (0, 0)))
        record(self, f'pad{i}', x)
      x = nn.Conv(stage.features, (stage.kernel, stage.kernel), strides=stage.stride, padding='VALID',
                  dtype=self.dtype, kernel_init=kernel_initializer(self.init_scheme), name=f'conv{i}')(x)
      record(self, f'conv{i}', x)
      x = nn.relu(x)
      record(self, f'relu{i}', x)
      if stage.pool and i < len(g.stages):
        x = max_pool(x, stage.pool)
        record(self, f'pool{i}', x)
    return x


class ClassifierHead(nn.Module):
  """The "fully connected" layers as convolutions over the pooled layer-5 map: [B,h,w,C5] -> [B,h',w',classes]."""
  geometry: Geometry
  num_classes: int
  dropout_rate: float = 0.5
  dtype: Dtype = jnp.float32
  init_scheme: str = 'paper'

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    g = self.geometry
    widths = g.hidden + (self.num_classes,)
    for j, (name, width) in enumerate(zip(g.fc_names(), widths)):
      kernel = g.fc_kernel if j == 0 else 1
      x = nn.Conv(width, (kernel, kernel), padding='VALID', dtype=self.dtype,
                  kernel_init=kernel_initializer(self.init_scheme), name=name)(x)
      record(self, name, x)
      if j < len(g.hidden):  # hidden layers: ReLU, then dropout 0.5 in training (paper section 3.1)
        x = nn.relu(x)
        record(self, f'relu{name[2:]}', x)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return x.astype(jnp.float32)


class OverFeat(nn.Module):
  """Features -> last k x k pooling (offset 0) -> classifier. Returns class scores [B, h', w', num_classes].

  At the training input size the output is [B, 1, 1, C]; on a larger image it is the coarse-stride score map
  of every window (dense evaluation). Pixel values 0..255 in; normalisation happens inside (layer 0).
  """
  geometry: Geometry
  num_classes: int = 1000
  dropout_rate: float = 0.5
  dtype: Dtype = jnp.float32
  init_scheme: str = 'paper'

  def setup(self):
    self.features = Features(self.geometry, dtype=self.dtype, init_scheme=self.init_scheme)
    self.classifier = ClassifierHead(self.geometry, self.num_classes, self.dropout_rate, dtype=self.dtype,
                                     init_scheme=self.init_scheme)

  def __call__(self, images: jax.Array, *, train: bool = False) -> jax.Array:
    pooled = self.pooled(images)
    logits = self.classifier(pooled, train=train)
    record(self, 'softmax', jax.nn.softmax(logits, axis=-1))
    return logits

  def unpooled(self, images: jax.Array) -> jax.Array:
    """Layer-5 map before the offset pooling: [B, H5, W5, C5] (what offset pooling shifts)."""
    return self.features(images)

  def pooled(self, images: jax.Array) -> jax.Array:
    """Layer-5 map after the last pooling at offset (0, 0): what the classifier and regressor read."""
    x = max_pool(self.features(images), self.geometry.offset_pool)
    record(self, f'pool{self.geometry.feature_layers}', x)
    return x

  def head(self, pooled: jax.Array, *, train: bool = False) -> jax.Array:
    """The classifier on an already pooled layer-5 map (one offset of the offset pooling)."""
    return self.classifier(pooled, train=train)


def layer_outputs(model: OverFeat, variables: Any, images: jax.Array,
                  names: Sequence[str]) -> dict[str, jax.Array]:
  """Outputs of the named layers (release names: 'conv1', 'relu1', 'pool1', 'pad3', ..., 'fc7', 'softmax').

  Every layer is computed densely on the whole image, as the release's feature mode does.
  """
  known = model.geometry.layer_names()
  unknown = [n for n in names if n not in known]
  if unknown:
    raise ValueError(f'unknown layer(s) {unknown}; this network has {known}.')
  _, state = model.apply(variables, images, mutable=['intermediates'])
  flat = {}
  for path, value in jax.tree_util.tree_flatten_with_path(
      state['intermediates'], is_leaf=lambda v: isinstance(v, tuple))[0]:
    flat[path[-1].key.removeprefix(LAYER_PREFIX)] = value[0]
  return {name: flat[name] for name in names}


def init_params(model: OverFeat, rng: jax.Array) -> Any:
  """Parameters for the model, initialised at its training input size (the shapes do not depend on it)."""
  size = model.geometry.input_size
  return model.init(rng, jnp.zeros((1, size, size, 3), jnp.float32))['params']
