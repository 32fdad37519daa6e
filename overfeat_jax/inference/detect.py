"""Detection inference (paper section 5): dense multi-scale windows -> thresholded class scores -> merged boxes.

The classifier has C + 1 outputs, the last one (index C) being background. At each scale every window (every
location and offset of the fine map) gets a softmax over C + 1; for each object class c every window whose
probability of c exceeds `score_threshold` contributes the regressor's box (decoded into the original image's
pixels, clipped to it) with that probability. To keep shapes static, each scale contributes at most
`max_per_scale` (window, class) pairs, its highest-scoring ones (the rest are below them anyway). The union over
scales is merged per class (greedy merge: scores summed over merged windows, merged boxes placed by the pair
average or the confidence-weighted one, `average`; or NMS: scores kept), and the
survivors, any number per image (at most `max_detections`, best first), are the detections. A window whose box
is empty once clipped to the image (zero or negative area) is no candidate, so no detection is an empty box.
"""

from typing import Any, Sequence

import jax
import jax.numpy as jnp

from overfeat_jax.inference.localize import BoxModel, Candidates, concat, decode_dense, dense_outputs
from overfeat_jax.inference.localize import check_method, merge_candidates, top_guesses
from overfeat_jax.inference import nonfinite
from overfeat_jax.inference.multiscale import resize_images


def scale_detections(box_model: BoxModel, params: Any, images: jax.Array, size: tuple[int, int], *,
                     score_threshold: float, max_per_scale: int, fine: bool = True) -> Candidates:
  """Candidate (box, class, score) triples of one scale, the best `max_per_scale` per image; valid: above
  `score_threshold` with a non-empty box (x2 > x1 and y2 > y1), or a non-finite score (counted by the merge)."""
  batch, height, width, _ = images.shape
  logits, deltas = dense_outputs(box_model, params, resize_images(images, size), fine=fine)
  probs = jax.nn.softmax(logits, axis=-1)[..., :-1]  # [B, h, w, C] object classes only (last = background)
  num_classes = probs.shape[-1]
  boxes = decode_dense(box_model.geometry, deltas, size, (height, width), fine)  # [B, h, w, R, 4]
  cells = probs.shape[1] * probs.shape[2]
  boxes = jnp.broadcast_to(boxes.reshape(batch, cells, -1, 4)[:, :, :num_classes], (batch, cells, num_classes, 4))
  flat_scores = probs.reshape(batch, cells * num_classes)
  k = min(max_per_scale, cells * num_classes)
  scores, idx = jax.lax.top_k(flat_scores, k)  # [B, k]
  classes = (idx % num_classes).astype(jnp.int32)
  boxes = jnp.take_along_axis(boxes.reshape(batch, cells * num_classes, 4), idx[..., None], axis=1)
  # An empty box (zero or negative area: the regressor's box lay wholly outside the image, clipped to its border,
  # `box_ops.to_image`) is never a detection, whatever its score. A non-finite score is not "below the
  # threshold": it stays a candidate so that the merge drops and counts it (`inference.nonfinite`) instead of it
  # vanishing silently; so does a NaN box (its comparisons are False, so it is not "empty").
  empty = (boxes[..., 2] <= boxes[..., 0]) | (boxes[..., 3] <= boxes[..., 1])
  return Candidates(boxes, scores, classes, ((scores > score_threshold) & ~empty) | ~jnp.isfinite(scores))


def detect(box_model: BoxModel, params: Any, images: jax.Array, *, scales: Sequence[tuple[int, int]],
           score_threshold: float = 0.5, method: str = 'overlap', threshold: float = 0.8,
           max_per_scale: int = 256, max_detections: int = 32, fine: bool = True,
           average: str = 'pair') -> dict[str, jax.Array]:
  """Detections of a batch [B, H, W, 3] (0..255). Jit with static options.

  `method`, `threshold` and `average` are the merge's (`localize.merge_candidates`).

  Returns:
    {'classes': [B, D] int32 (-1 = empty slot), 'boxes': [B, D, 4] original-image pixels, 'scores': [B, D],
     'valid': [B, D] bool, 'num_nonfinite': [B] int32 candidates dropped for a non-finite score or box
     (`inference.nonfinite`)}, best first.
  """
  check_method(method, average)
  parts = [scale_detections(box_model, params, images, tuple(s), score_threshold=score_threshold,
                            max_per_scale=max_per_scale, fine=fine) for s in scales]
  candidates = concat(parts)
  merged = merge_candidates(candidates, method=method, threshold=threshold, average=average)
  classes, boxes, scores = top_guesses(merged, max_detections)
  return {'classes': classes, 'boxes': boxes, 'scores': scores, 'valid': classes >= 0,
          'num_nonfinite': nonfinite.num_dropped(candidates.boxes, candidates.scores, candidates.valid)}


def make_detector(box_model: BoxModel, **options):
  """A jitted `fn(params, images) -> detect(...)` with the options fixed (one compiled program)."""
  options = dict(options)
  options['scales'] = tuple(tuple(int(v) for v in s) for s in options.get('scales', ()))
  return jax.jit(lambda params, images: detect(box_model, params, images, **options))
