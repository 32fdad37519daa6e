"""Dense evaluation with offset max pooling (paper section 3.3, Fig. 3).

The network's layers 1-5 run once over the whole image. The last k x k pooling is then applied at every offset
(Δy, Δx) in {0..k-1}^2 of the unpooled layer-5 map, each pooled map goes through the head (the classifier, or
the box regressor), and the k^2 output maps are interleaved into one map whose stride is the coarse stride / k
(fast 32 -> 16, accurate 36 -> 12). The offsets are a `jax.vmap`, not a Python loop.

Every offset pools a map of the same size, `(H5 - (k - 1)) // k` cells (the size the largest offset allows;
Fig. 3: a 20-pixel map gives 6 pooled cells at each of Δ = 0, 1, 2), so the k^2 maps stack and interleave.
Cell (r, c) of the interleaved map is the window whose top-left input pixel is (r, c) * fine_stride.
"""

from typing import Callable

import jax
import jax.numpy as jnp

from overfeat_jax.models.overfeat import max_pool


def offset_pool(unpooled: jax.Array, k: int) -> jax.Array:
  """All k*k offset poolings of a layer-5 map: [B, H, W, C] -> [k*k, B, h, w, C], offsets in row-major order."""
  _, height, width, _ = unpooled.shape
  h, w = (height - (k - 1)) // k, (width - (k - 1)) // k
  if h < 1 or w < 1:
    raise ValueError(f'layer-5 map {height}x{width} is too small for {k}x{k} offset pooling.')
  dy, dx = jnp.divmod(jnp.arange(k * k), k)

  def pool_at(oy, ox):
    window = jax.lax.dynamic_slice_in_dim(unpooled, oy, h * k, axis=1)
    window = jax.lax.dynamic_slice_in_dim(window, ox, w * k, axis=2)
    return max_pool(window, k)

  return jax.vmap(pool_at)(dy, dx)


def interleave(maps: jax.Array, k: int) -> jax.Array:
  """[k*k, B, h, w, ...] outputs per offset -> [B, h*k, w*k, ...] with out[:, i*k+dy, j*k+dx] = maps[dy*k+dx][:, i, j]."""
  _, batch, h, w = maps.shape[:4]
  rest = maps.shape[4:]
  maps = maps.reshape((k, k, batch, h, w) + rest)
  maps = jnp.moveaxis(maps, (0, 1), (2, 4))  # [B, h, k(dy), w, k(dx), ...]
  return maps.reshape((batch, h * k, w * k) + rest)


def dense_apply(head: Callable[[jax.Array], jax.Array], unpooled: jax.Array, k: int,
                fine: bool = True) -> jax.Array:
  """Runs `head` (pooled layer 5 -> per-window outputs) densely: the coarse map, or the interleaved fine map."""
  if not fine:
    return head(max_pool(unpooled, k))
  return interleave(jax.vmap(head)(offset_pool(unpooled, k)), k)


def dense_scores(model, params, images: jax.Array, fine: bool = True) -> jax.Array:
  """Class scores of every window of `images` [B, H, W, 3] (0..255): [B, h', w', classes], coarse or fine stride."""
  variables = {'params': params}
  unpooled = model.apply(variables, images, method=model.unpooled)
  head = lambda pooled: model.apply(variables, pooled, method=model.head)
  return dense_apply(head, unpooled, model.geometry.offset_pool, fine)
