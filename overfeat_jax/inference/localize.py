"""Localization inference (paper section 4.3): dense multi-scale boxes -> top-k classes -> merge -> top-5 guesses.

For each scale s (the image resized to a static (height, width), so every scale compiles once):
  (a) C_s = the top-k classes by the maximum of the class map (softmax) over every location and offset;
  (b) B_s = the regressor's box for each class of C_s at every location and offset of the fine map, decoded from
      the window-relative encoding (`box_ops.encode`) into the original image's pixels (clipped to the image),
      with that window's class probability as its score;
then (c) B = the union of the B_s, and (d) the greedy merge (`inference.merge`, per class; score 'overlap' or
'literal', threshold t; merged box the pair average 'pair' or the confidence-weighted 'score') or, as an
alternative, per-class NMS. A merged box's score is the sum of the class
outputs of the windows merged into it; the final guesses are the surviving boxes ranked by that score (top 5
for the ILSVRC localization error; the same class may appear twice).

Everything is padded to static shapes (N = sum over scales of rows * cols * k per image), so the whole
procedure is one jitted program for a batch.
"""

import dataclasses
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from overfeat_jax import box_ops
from overfeat_jax.errors import InputError
from overfeat_jax.inference import merge as merge_lib
from overfeat_jax.inference import nms as nms_lib
from overfeat_jax.inference import nonfinite
from overfeat_jax.inference.dense import dense_apply
from overfeat_jax.inference.multiscale import resize_images

MERGE_CHOICES = ('overlap', 'literal', 'nms')
AVERAGE_CHOICES = merge_lib.AVERAGES  # how the greedy merge averages a pair ('nms' ignores it)


@dataclasses.dataclass(frozen=True)
class BoxModel:
  """A classifier (`OverFeat`) and a box regressor (`BoxRegressor`) over the same layer 5.

  Params are `{'backbone': OverFeat params, 'regressor': BoxRegressor params}`.
  """
  classifier: Any
  regressor: Any

  @property
  def geometry(self):
    return self.classifier.geometry


def dense_outputs(box_model: BoxModel, params: Any, images: jax.Array, *, fine: bool = True,
                  train: bool = False, rng: jax.Array | None = None,
                  regressor_stop_gradient: bool = False) -> tuple[jax.Array, jax.Array]:
  """Class logits [B, h, w, C] and window-relative boxes [B, h, w, R, 4] of every window (R = 1 or C).

  Args:
    train: dropout in the classifier (needs `rng`); the regressor has none.
    regressor_stop_gradient: the box loss does not reach layers 1-5 (detection trains them with the class loss
      only, as the paper trains the regressor on fixed features).
  """
  model, reg = box_model.classifier, box_model.regressor
  backbone = {'params': params['backbone']}
  unpooled = model.apply(backbone, images, method=model.unpooled)
  rngs = {'dropout': rng} if train else {}

  num_classes = []  # set while tracing `head`: where the joint output splits

  def head(pooled):
    logits = model.apply(backbone, pooled, train=train, rngs=rngs, method=model.head)
    num_classes[:] = [logits.shape[-1]]
    features = jax.lax.stop_gradient(pooled) if regressor_stop_gradient else pooled
    boxes = reg.apply({'params': params['regressor']}, features)  # [B, h, w, R, 4]
    # One array per window, so `dense_apply` interleaves and trims both outputs together.
    return jnp.concatenate([logits, boxes.reshape(boxes.shape[:3] + (-1,)).astype(logits.dtype)], axis=-1)

  joint = dense_apply(head, unpooled, model.geometry.offset_pool, fine)  # [B, h, w, C + R*4]
  boxes = joint[..., num_classes[0]:]
  return joint[..., :num_classes[0]], boxes.reshape(boxes.shape[:3] + (-1, 4))


class Candidates(NamedTuple):
  """A padded set of boxes per image."""
  boxes: jax.Array  # [B, N, 4] in the original image's pixels
  scores: jax.Array  # [B, N]
  classes: jax.Array  # [B, N] int32
  valid: jax.Array  # [B, N] bool


def decode_dense(geometry, deltas: jax.Array, size: tuple[int, int], image_hw: tuple[int, int],
                 fine: bool) -> jax.Array:
  """Window-relative boxes [B, h, w, R, 4] of a scale -> boxes [B, h, w, R, 4] in the original image's pixels."""
  windows = box_ops.window_boxes(geometry, size, fine)[None, :, :, None, :]  # [1, h, w, 1, 4]
  boxes = box_ops.decode(deltas, windows, geometry.input_size)
  scale = (size[1] / image_hw[1], size[0] / image_hw[0])
  return box_ops.to_image(boxes, scale, image_hw)


def scale_candidates(box_model: BoxModel, params: Any, images: jax.Array, size: tuple[int, int], *,
                     top_k: int, fine: bool = True) -> Candidates:
  """Steps (a) and (b) at one scale: boxes of the top-k classes at every window, scored by the class output."""
  batch, height, width, _ = images.shape
  logits, deltas = dense_outputs(box_model, params, resize_images(images, size), fine=fine)
  probs = jax.nn.softmax(logits, axis=-1)  # [B, h, w, C]
  num_classes = probs.shape[-1]
  k = min(top_k, num_classes)
  _, classes = jax.lax.top_k(probs.max(axis=(1, 2)), k)  # [B, k]
  boxes = decode_dense(box_model.geometry, deltas, size, (height, width), fine)  # [B, h, w, R, 4]
  cells = probs.shape[1] * probs.shape[2]
  probs = probs.reshape(batch, cells, num_classes)
  scores = jnp.take_along_axis(probs, classes[:, None, :], axis=2)  # [B, cells, k]
  boxes = boxes.reshape(batch, cells, -1, 4)
  if boxes.shape[2] == 1:  # single-class regression: one box per window, whatever the class
    boxes = jnp.broadcast_to(boxes, (batch, cells, k, 4))
  else:  # per-class regression: each class's own box
    boxes = jnp.take_along_axis(boxes, classes[:, None, :, None], axis=2)
  classes = jnp.broadcast_to(classes[:, None, :], (batch, cells, k))
  n = cells * k
  return Candidates(boxes.reshape(batch, n, 4), scores.reshape(batch, n), classes.reshape(batch, n).astype(jnp.int32),
                    jnp.ones((batch, n), bool))


def concat(parts: Sequence[Candidates]) -> Candidates:
  """Step (c): the union over scales (concatenation along N)."""
  return Candidates(*(jnp.concatenate(field, axis=1) for field in zip(*parts)))


def check_method(method: str, average: str = 'pair') -> None:
  """Refuses an unknown merge method or merge average before anything is traced."""
  if method not in MERGE_CHOICES:
    raise InputError(f'merge method must be one of {MERGE_CHOICES}, got {method!r}.')
  if average not in AVERAGE_CHOICES:
    raise InputError(f'merge average must be one of {AVERAGE_CHOICES}, got {average!r}.')


def merge_candidates(c: Candidates, *, method: str, threshold: float, average: str = 'pair') -> Candidates:
  """Step (d) per image: greedy merge (scores summed) or per-class NMS (scores kept); survivors are valid.

  `average` is how the greedy merge places a merged box ('pair' or 'score', `inference.merge`); NMS keeps
  boxes as they are and ignores it. Candidates with a non-finite score or box come out invalid (both methods
  drop them on entry, `inference.nonfinite`).
  """
  check_method(method, average)
  if method == 'nms':
    keep = jax.vmap(lambda b, s, k, v: nms_lib.nms(b, s, k, v, iou_threshold=threshold))(*c)
    return c._replace(valid=keep)

  def one(b, s, k, v):
    r = merge_lib.merge_boxes(b, s, k, v, threshold=threshold, score_fn=method, average=average)
    return r.boxes, r.scores, r.classes, r.valid

  return Candidates(*jax.vmap(one)(*c))


def top_guesses(c: Candidates, count: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The `count` best valid boxes per image: classes [B, count] (-1 = none), boxes [B, count, 4], scores.

  Only finite candidates are ranked (`nonfinite.usable`); an empty slot has class -1, score 0 and box 0, so
  no NaN from a dropped candidate reaches the metrics.
  """
  masked = jnp.where(nonfinite.usable(c.boxes, c.scores, c.valid), c.scores, -jnp.inf)
  count_ = min(count, masked.shape[1])
  scores, idx = jax.lax.top_k(masked, count_)
  found = jnp.isfinite(scores)
  classes = jnp.where(found, jnp.take_along_axis(c.classes, idx, axis=1), -1)
  boxes = jnp.where(found[..., None], jnp.take_along_axis(c.boxes, idx[..., None], axis=1), 0.0)
  scores = jnp.where(found, scores, 0.0)
  pad = count - count_
  if pad:
    classes = jnp.pad(classes, ((0, 0), (0, pad)), constant_values=-1)
    boxes = jnp.pad(boxes, ((0, 0), (0, pad), (0, 0)))
    scores = jnp.pad(scores, ((0, 0), (0, pad)))
  return classes, boxes, scores


def localize(box_model: BoxModel, params: Any, images: jax.Array, *, scales: Sequence[tuple[int, int]],
             top_k: int = 2, method: str = 'overlap', threshold: float = 0.8, fine: bool = True,
             num_guesses: int = 5, average: str = 'pair') -> dict[str, jax.Array]:
  """The paper's localization procedure on a batch of images [B, H, W, 3] (0..255). Jit with static options.

  `method`, `threshold` and `average` are the merge's (`merge_candidates`).

  Returns:
    {'classes': [B, G] int32 (-1 = no guess), 'boxes': [B, G, 4] original-image pixels, 'scores': [B, G],
     'num_nonfinite': [B] int32 candidates dropped for a non-finite score or box (`inference.nonfinite`)}.
  """
  check_method(method, average)
  parts = [scale_candidates(box_model, params, images, tuple(s), top_k=top_k, fine=fine) for s in scales]
  candidates = concat(parts)
  merged = merge_candidates(candidates, method=method, threshold=threshold, average=average)
  classes, boxes, scores = top_guesses(merged, num_guesses)
  return {'classes': classes, 'boxes': boxes, 'scores': scores,
          'num_nonfinite': nonfinite.num_dropped(candidates.boxes, candidates.scores, candidates.valid)}


def make_localizer(box_model: BoxModel, **options):
  """A jitted `fn(params, images) -> localize(...)` with the options fixed (one compiled program)."""
  options = dict(options)
  options['scales'] = tuple(tuple(int(v) for v in s) for s in options.get('scales', ()))
  return jax.jit(lambda params, images: localize(box_model, params, images, **options))
