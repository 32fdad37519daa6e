"""The box regression network of paper section 4, on the pooled layer-5 features.

Two hidden layers (4096 units over the classifier's k x k window of layer 5, then 1024 units 1x1) and an
output of 4 box edges per class (per-class regression, PCR) or 4 in total (single-class regression, SCR).
All of it is convolutions, so like the classifier it runs densely and gives one box per output location
and per offset of the offset pooling.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from overfeat_jax.models.geometry import Geometry
from overfeat_jax.models.overfeat import kernel_initializer

Dtype = Any


class BoxRegressor(nn.Module):
  """[B, h, w, C5] pooled layer 5 -> [B, h', w', outputs, 4] box edges (left, top, right, bottom).

  `num_outputs` is the number of classes for per-class regression, 1 for single-class regression.
  """
  geometry: Geometry
  num_outputs: int = 1
  hidden: tuple[int, ...] = (4096, 1024)
  dtype: Dtype = jnp.float32
  init_scheme: str = 'paper'

  @nn.compact
  def __call__(self, pooled: jax.Array) -> jax.Array:
    x = pooled.astype(self.dtype)
    for j, width in enumerate(self.hidden):
      kernel = self.geometry.fc_kernel if j == 0 else 1
      x = nn.Conv(width, (kernel, kernel), padding='VALID', dtype=self.dtype,
                  kernel_init=kernel_initializer(self.init_scheme), name=f'reg{j + 1}')(x)
      x = nn.relu(x)
    x = nn.Conv(4 * self.num_outputs, (1, 1), dtype=self.dtype, kernel_init=kernel_initializer(self.init_scheme),
                name=f'reg{len(self.hidden) + 1}')(x)
    return x.astype(jnp.float32).reshape(x.shape[:-1] + (self.num_outputs, 4))
