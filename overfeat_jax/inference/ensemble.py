"""Ensembles (paper Table 2's multi-model rows): one network's class probabilities over its views; the sweep
averages them over networks (`sweeps.runner`).

Why probabilities: networks of different geometries (fast, accurate) or seeds have logits on different scales;
their softmax outputs are comparable, and the mean of per-network views is what the paper averages.
"""

from typing import Any, Sequence

import jax
import jax.numpy as jnp

from overfeat_jax.inference.multiscale import multiscale_class_scores


def crop_views(images: jax.Array, crop: int, flips: bool, ten: bool) -> list[jax.Array]:
  """The centre crop (or the 4 corners + centre: the paper's other view) of `crop` pixels, + mirrors if `flips`."""
  _, height, width, _ = images.shape
  if crop > min(height, width):
    from overfeat_jax.errors import InputError  # pylint: disable=g-import-not-at-top
    raise InputError(f'crop {crop} is larger than the {height}x{width} evaluation images.')
  cy, cx = (height - crop) // 2, (width - crop) // 2
  corners = [(cy, cx)] + ([(0, 0), (0, width - crop), (height - crop, 0), (height - crop, width - crop)]
                          if ten else [])
  views = [images[:, y:y + crop, x:x + crop] for y, x in corners]
  return views + [v[:, :, ::-1] for v in views] if flips else views


def view_scores(model, params: Any, images: jax.Array, *, view: str, scales: Sequence[tuple[int, int]] = (),
                flips: bool = True, fine: bool = True) -> jax.Array:
  """One network's class probabilities [B, C]: 'dense' (multi-scale), 'ten_crop' or 'center_crop'."""
  if view == 'dense':
    return multiscale_class_scores(model, params, images, scales=scales, flips=flips, fine=fine)
  views = crop_views(images, model.geometry.input_size, flips, view == 'ten_crop')
  probs = [jax.nn.softmax(model.apply({'params': params}, v), axis=-1).max(axis=(1, 2)) for v in views]
  return jnp.mean(jnp.stack(probs), axis=0)

