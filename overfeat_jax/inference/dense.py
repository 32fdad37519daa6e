"""Dense evaluation with offset max pooling (paper section 3.3, Fig. 3).

The network's layers 1-5 run once over the whole image. The last k x k pooling is then applied at every offset
(Δy, Δx) in {0..k-1}^2 of the unpooled layer-5 map, each pooled map goes through the head (the classifier, or
the box regressor), and the k^2 output maps are interleaved into one map whose stride is the coarse stride / k
(fast 32 -> 16, accurate 36 -> 12). The k*k pooled maps are cut with static slices and the head is
`jax.vmap`-ed over them, which XLA folds into the batch axis (one head call on [k*k*B, ...]).

Offset Δ pools the cells Δ, Δ+1, ... of the unpooled map, so it has `(H5 - Δ) // k` pooled cells (Fig. 3: a
20-pixel map gives 6 at each of Δ = 0, 1, 2; the fast network's 12-pixel map at 245 x 245 gives 6 at Δ = 0 but 5
at Δ = 1). To vmap, every offset pools `H5 // k` cells of a map padded by k - 1 at the bottom/right; the cells
that read padding feed only windows that leave the image, and since `(H5 - Δ) // k` never grows with Δ these
windows are exactly the tail of the interleaved map, which `interleave` cuts off. Every cell that remains is a
real window: cell (r, c) is the window whose top-left input pixel is (r, c) * fine_stride.
"""

from typing import Callable

import jax
import jax.numpy as jnp

from overfeat_jax.models.overfeat import max_pool


def offset_pool(unpooled: jax.Array, k: int) -> jax.Array:
  """All k*k offset poolings of a layer-5 map: [B, H, W, C] -> [k*k, B, H//k, W//k, C], offsets row-major.

  Offset (dy, dx) pools rows dy + k*i ... dy + k*i + k - 1; pooled cells that would need rows past the map read
  zero padding (they are not real pooling regions: see `fine_length`, which excludes every window using them).
  """
  _, height, width, _ = unpooled.shape
  h, w = height // k, width // k
  if h < 1 or w < 1:
    raise ValueError(f'layer-5 map {height}x{width} is too small for {k}x{k} pooling.')
  unpooled = jnp.pad(unpooled, ((0, 0), (0, k - 1), (0, k - 1), (0, 0)))
  # Static slices, one per offset: a vmap over traced offsets would become two gathers that copy the whole
  # padded map k*k times (experiments/benchmarks/hlo_report.py); slices fuse into the pooling instead.
  return jnp.stack([max_pool(unpooled[:, dy:dy + h * k, dx:dx + w * k], k)
                    for dy in range(k) for dx in range(k)])


def fine_length(unpooled_size: int, per_offset: int, k: int) -> int:
  """Number of real windows along one axis of the interleaved map.

  `per_offset` = outputs per offset computed from `unpooled_size // k` pooled cells; offset d really has
  `(unpooled_size - d) // k` pooled cells, one fewer output when that is smaller.
  """
  return sum(max(per_offset - (unpooled_size // k - (unpooled_size - d) // k), 0) for d in range(k))


def interleave(maps: jax.Array, k: int, lengths: tuple[int, int] | None = None) -> jax.Array:
  """[k*k, B, h, w, ...] per offset -> [B, h*k, w*k, ...], out[:, i*k+dy, j*k+dx] = maps[dy*k+dx][:, i, j].

  `lengths` (rows, cols) keeps only the first rows/cols: the real windows (`fine_length`).
  """
  _, batch, h, w = maps.shape[:4]
  rest = maps.shape[4:]
  maps = maps.reshape((k, k, batch, h, w) + rest)
  maps = jnp.moveaxis(maps, (0, 1), (2, 4))  # [B, h, k(dy), w, k(dx), ...]
  out = maps.reshape((batch, h * k, w * k) + rest)
  return out if lengths is None else out[:, :lengths[0], :lengths[1]]


def dense_apply(head: Callable[[jax.Array], jax.Array], unpooled: jax.Array, k: int,
                fine: bool = True) -> jax.Array:
  """Runs `head` (pooled layer 5 -> per-window outputs) densely: the coarse map, or the interleaved fine map."""
  if not fine:
    return head(max_pool(unpooled, k))
  maps = jax.vmap(head)(offset_pool(unpooled, k))  # [k*k, B, h, w, ...]
  lengths = tuple(fine_length(unpooled.shape[1 + a], maps.shape[2 + a], k) for a in range(2))
  return interleave(maps, k, lengths)


def dense_scores(model, params, images: jax.Array, fine: bool = True) -> jax.Array:
  """Class scores of every window of `images` [B, H, W, 3] (0..255): [B, h', w', classes], coarse or fine stride."""
  variables = {'params': params}
  unpooled = model.apply(variables, images, method=model.unpooled)
  head = lambda pooled: model.apply(variables, pooled, method=model.head)
  return dense_apply(head, unpooled, model.geometry.offset_pool, fine)
