"""Parameter-free stand-ins for OverFeat and BoxRegressor whose boxes point at one known box from every window.

The fake layer 5 carries, per cell, its own row and column index and the image's scale factors; after the offset
max pooling a cell holds the largest row/column of its k x k block, from which the fake regressor recovers the
window's top-left input pixel and encodes `TARGET` (in original-image pixels) relative to it. If the inference
code's window geometry (stride, offsets, interleaving, scale) disagreed with `box_ops`, the decoded boxes
would miss `TARGET`.
"""

import flax.linen as nn
import jax.numpy as jnp

from overfeat_jax.models.geometry import Geometry

TARGET = jnp.asarray([14.0, 20.0, 50.0, 58.0])  # in the original 72 x 72 image
ORIGINAL = 72


class FakeClassifier(nn.Module):
  geometry: Geometry
  logits: tuple[float, ...]

  def __call__(self, images, *, train=False):
    return self.head(self.unpooled(images))

  def unpooled(self, images):
    g = self.geometry
    b, height, width, _ = images.shape
    h5, w5 = g.unpooled_size(height), g.unpooled_size(width)
    rows = jnp.broadcast_to(jnp.arange(h5, dtype=jnp.float32)[:, None], (h5, w5))
    cols = jnp.broadcast_to(jnp.arange(w5, dtype=jnp.float32)[None, :], (h5, w5))
    sy, sx = jnp.full((h5, w5), height / ORIGINAL), jnp.full((h5, w5), width / ORIGINAL)
    return jnp.broadcast_to(jnp.stack([rows, cols, sy, sx], -1), (b, h5, w5, 4))

  def head(self, pooled, *, train=False):
    f = self.geometry.fc_kernel
    b, h, w, _ = pooled.shape
    return jnp.broadcast_to(jnp.asarray(self.logits), (b, h - f + 1, w - f + 1, len(self.logits)))


class FakeRegressor(nn.Module):
  """Every window points at `TARGET`, shifted right by `spread` times the window's left column (original
  pixels), so that with `spread != 0` the windows' boxes differ and merge averages can be told apart."""
  geometry: Geometry
  spread: float = 0.0

  def __call__(self, pooled):
    g = self.geometry
    f, k, s = g.fc_kernel, g.offset_pool, g.fine_stride
    top = pooled[:, :pooled.shape[1] - f + 1, :pooled.shape[2] - f + 1]  # the first cell of each window
    wy = (top[..., 0] - (k - 1)) * s  # the block's largest row index -> the window's top input row
    wx = (top[..., 1] - (k - 1)) * s
    sy, sx = top[..., 2], top[..., 3]
    t = TARGET + self.spread * (wx / sx)[..., None] * jnp.asarray([1.0, 0.0, 1.0, 0.0])  # [B, h, w, 4]
    t = [t[..., c] for c in range(4)]
    deltas = jnp.stack([t[0] * sx - wx, t[1] * sy - wy, t[2] * sx - wx, t[3] * sy - wy], -1) / g.input_size
    return deltas[..., None, :]  # [B, h, w, 1, 4]: single-class regression
