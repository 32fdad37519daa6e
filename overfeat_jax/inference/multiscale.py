"""Multi-scale, flipped, dense classification (paper section 3.3 and Table 5).

For each scale (an input size (height, width); the image is resized to exactly that size, so every scale has a
static shape and compiles once) and each flip: dense class scores at the fine stride (offset pooling), the
per-class maximum over all locations and offsets; then the mean of these C-vectors over scales and flips.

Sizes that a network does not tile exactly lose their right/bottom remainder, as valid convolutions and the
release's floor pooling do (e.g. the fast network's conv1 on 245 columns covers columns 0..240; the last four
are never read). The output map sizes per scale are `Geometry.output_size(size, fine=True)`.
"""

from typing import Sequence

import jax
import jax.numpy as jnp

from overfeat_jax.inference.dense import dense_scores

# Paper Table 5 (accurate network); the fast network uses the same six input sizes.
PAPER_SCALES: tuple[tuple[int, int], ...] = (
    (245, 245), (281, 317), (317, 389), (389, 461), (425, 497), (461, 569))


def resize_images(images: jax.Array, size: tuple[int, int], flip: bool = False) -> jax.Array:
  """[B, H, W, 3] pixel values -> float32 [B, h, w, 3], bilinear with antialiasing, optionally mirrored.

  The device half of the one image path (docs/ARCHITECTURE.md): the same filter family as the host's
  `data.images.resize` (triangle filter, support widened by the factor when shrinking, half-pixel centres);
  the two agree to Pillow's uint8 rounding, at most 1 grey level (tests/test_image_path.py). Not rounded here.
  """
  batch, _, _, channels = images.shape
  out = images.astype(jnp.float32)
  if out.shape[1:3] != tuple(size):
    out = jax.image.resize(out, (batch, size[0], size[1], channels), method='linear', antialias=True)
  return out[:, :, ::-1] if flip else out


def spatial_max(scores: jax.Array, score: str = 'softmax') -> jax.Array:
  """[B, h, w, C] class outputs -> [B, C]: per-class maximum over every location (and offset)."""
  if score == 'softmax':
    scores = jax.nn.softmax(scores, axis=-1)
  elif score != 'logits':
    raise ValueError(f"score must be 'softmax' or 'logits', not {score!r}.")
  return scores.max(axis=(1, 2))


def multiscale_class_scores(model, params, images: jax.Array, *, scales: Sequence[tuple[int, int]],
                            flips: bool = True, fine: bool = True, score: str = 'softmax') -> jax.Array:
  """The paper's classification procedure: [B, H, W, 3] -> averaged class scores [B, C]. Jit with static options."""
  vectors = []
  for size in scales:
    for flip in ((False, True) if flips else (False,)):
      scaled = resize_images(images, tuple(size), flip)
      vectors.append(spatial_max(dense_scores(model, params, scaled, fine=fine), score))
  return jnp.mean(jnp.stack(vectors), axis=0)


def make_multiscale_classifier(model, *, scales: Sequence[tuple[int, int]], flips: bool = True,
                               fine: bool = True, score: str = 'softmax'):
  """A jitted `fn(params, images) -> [B, C]`: one compiled program for all scales and flips."""
  scales = tuple(tuple(int(v) for v in s) for s in scales)

  @jax.jit
  def classify(params, images):
    return multiscale_class_scores(model, params, images, scales=scales, flips=flips, fine=fine, score=score)

  return classify
