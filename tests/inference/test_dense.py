"""The central claim: a dense pass over a large image equals running the network on every window.

Exact (up to float32 rounding) for networks without zero padding; the paper's padded layers 3-5 make border
cells of an interior window see real neighbours instead of zeros, so for the padded networks the test below
measures the deviation instead and the docs say so.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from overfeat_jax.inference.dense import dense_scores, fine_length, interleave, offset_pool
from overfeat_jax.models import ACCURATE, FAST, SMALL, OverFeat, init_params
from overfeat_jax.models.overfeat import max_pool


def unpadded(geometry, divisor):
  g = geometry.scaled(divisor)
  return dataclasses.replace(g, name=g.name + '-nopad',
                             stages=tuple(dataclasses.replace(s, pad=0) for s in g.stages))


def windows(images, size, stride, rows, cols):
  """Every window of the training size at the given stride, cropped out of the image: [rows*cols*B, s, s, 3]."""
  crops = [images[:, r * stride:r * stride + size, c * stride:c * stride + size]
           for r in range(rows) for c in range(cols)]
  return jnp.concatenate(crops)


def max_rel_err(a, b):
  return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


@pytest.mark.parametrize('geometry', [unpadded(FAST, 16), unpadded(ACCURATE, 16)],
                         ids=lambda g: g.name)
@pytest.mark.parametrize('fine', [False, True], ids=['coarse', 'fine'])
def test_dense_map_equals_per_window_network(geometry, fine):
  model = OverFeat(geometry, num_classes=5, init_scheme='he')
  params = init_params(model, jax.random.key(1))
  # the window a cell sees: the smallest input with one output (extra right/bottom pixels are never read)
  size, k = geometry.min_input_size(), geometry.offset_pool
  stride = geometry.fine_stride if fine else geometry.coarse_stride
  # An image 2.x windows of the coarse stride larger than the training size, and not square.
  height, width = size + 2 * geometry.coarse_stride + 5, size + geometry.coarse_stride + 3
  images = jax.random.uniform(jax.random.key(2), (2, height, width, 3), maxval=255.0)
  dense = dense_scores(model, params, images, fine=fine)  # [B, R, C, classes]
  rows, cols = dense.shape[1:3]
  assert (rows, cols) == (geometry.output_size(height, fine), geometry.output_size(width, fine))
  assert rows >= 2 and cols >= 2  # these sizes leave offsets with unequal pooled maps (the ragged case)
  per_window = model.apply({'params': params}, windows(images, size, stride, rows, cols))  # [R*C*B,1,1,n]
  per_window = per_window.reshape(rows, cols, 2, -1).transpose(2, 0, 1, 3)
  assert max_rel_err(dense, per_window) < 1e-4


def test_padded_paper_networks_deviate_only_through_window_border_padding():
  """With padding, dense != per-window in general; measure it so the docs can state it."""
  geometry = SMALL.scaled(8)
  model = OverFeat(geometry, num_classes=5, init_scheme='he')
  params = init_params(model, jax.random.key(1))
  images = jax.random.uniform(jax.random.key(2), (1, 96, 96, 3), maxval=255.0)
  dense = dense_scores(model, params, images, fine=False)
  per_window = model.apply({'params': params}, windows(images, 64, 16, 3, 3)).reshape(3, 3, 1, -1)
  per_window = per_window.transpose(2, 0, 1, 3)
  # The window at the image's corner shares its top/left zero padding, the rest differ a little.
  assert max_rel_err(dense, per_window) > 1e-4


def test_offset_pool_equals_shifted_pooling():
  x = jax.random.normal(jax.random.key(0), (2, 20, 17, 3))
  for k in (2, 3):
    pooled = offset_pool(x, k)
    assert pooled.shape == (k * k, 2, 20 // k, 17 // k, 3)
    for dy in range(k):
      for dx in range(k):
        expected = max_pool(x[:, dy:, dx:], k)  # the real pooling regions of this offset
        h, w = expected.shape[1:3]
        np.testing.assert_array_equal(pooled[dy * k + dx][:, :h, :w], expected)


def test_paper_fig3_twenty_pixels_give_six_pooled_cells_per_offset():
  x = jnp.arange(20.0).reshape(1, 20, 1, 1) * jnp.ones((1, 1, 5, 1))
  pooled = offset_pool(x, 3)
  assert pooled.shape == (9, 1, 6, 1, 1)  # width 5 also pools to 1 cell
  # Δ = 0 pools (0,1,2),(3,4,5),...; Δ = 2 pools (2,3,4),...,(17,18,19): maxima 4, 7, ..., 19.
  np.testing.assert_array_equal(pooled[0, 0, :, 0, 0], [2, 5, 8, 11, 14, 17])
  np.testing.assert_array_equal(pooled[6, 0, :, 0, 0], [4, 7, 10, 13, 16, 19])


def test_interleave_places_offsets_at_fine_positions():
  k, maps = 3, jnp.arange(9 * 2 * 4).reshape(9, 1, 2, 4, 1)
  out = interleave(maps, k)
  assert out.shape == (1, 6, 12, 1)
  for dy in range(k):
    for dx in range(k):
      np.testing.assert_array_equal(out[0, dy::k, dx::k, 0], maps[dy * k + dx, 0, :, :, 0])
  np.testing.assert_array_equal(interleave(maps, k, (5, 10)), out[:, :5, :10])


def test_fine_length_counts_the_windows_each_offset_really_has():
  # fast at 245: 12 unpooled cells, k=2: offset 0 pools 6 cells (1 output of a 6-wide head), offset 1 pools 5 (none)
  assert fine_length(12, per_offset=1, k=2) == 1
  assert FAST.output_size(245, fine=True) == 1 and FAST.output_size(245) == 1
  # accurate at 245: 17 cells, k=3: every offset pools 5 -> 1 output each -> 3 (Table 5)
  assert fine_length(17, per_offset=1, k=3) == 3
  assert fine_length(18, per_offset=2, k=3) == 2 + 1 + 1


def test_coarse_dense_map_is_the_plain_forward_pass():
  geometry = FAST.scaled(16)
  model = OverFeat(geometry, num_classes=4)
  params = init_params(model, jax.random.key(0))
  images = jax.random.uniform(jax.random.key(3), (1, 263, 295, 3), maxval=255.0)
  np.testing.assert_allclose(dense_scores(model, params, images, fine=False),
                             model.apply({'params': params}, images), rtol=1e-5, atol=1e-6)
