"""Per-class greedy non-maximum suppression, jit-compiled with static shapes (padding + a `valid` mask).

Greedy NMS: take the highest-scoring remaining box, keep it, and drop every remaining box of the same class
whose IoU with it is strictly greater than `iou_threshold`; repeat until nothing remains. Equal scores are
taken in index order (the lower index first), as a stable sort by decreasing score would. The loop runs once
per KEPT box and computes one IoU row per iteration (O(N) memory, O(N x kept) time), so several thousand boxes
are cheap. `nms_reference` in tests/inference/merge_reference.py is the plain sequential version the tests
compare with.
"""

import jax
import jax.numpy as jnp

from overfeat_jax import box_ops
from overfeat_jax.errors import InputError
from overfeat_jax.inference import nonfinite


@jax.jit
def _nms_jit(boxes, scores, classes, valid, iou_threshold):
  def body(c):
    remaining, keep, steps = c
    top = jnp.max(jnp.where(remaining, scores, -jnp.inf))
    k = jnp.argmax(remaining & (scores == top))  # first remaining box with the top score (all finite)
    overlap = box_ops.iou(boxes[k][None, :], boxes)  # [N]
    suppress = (classes == classes[k]) & (overlap > iou_threshold)
    return remaining.at[k].set(False) & ~suppress, keep.at[k].set(True), steps + 1

  # Non-finite candidates are dropped on entry (`nonfinite`): a NaN score never equals the running maximum, so
  # it was never removed and the loop spun forever. Each step now removes box k; the step bound N is a
  # second guarantee that the loop ends whatever the input.
  remaining = nonfinite.usable(boxes, scores, valid)
  cond = lambda c: c[0].any() & (c[2] < boxes.shape[0])
  _, keep, _ = jax.lax.while_loop(cond, body, (remaining, jnp.zeros_like(valid), jnp.zeros((), jnp.int32)))
  return keep


def _check(boxes, scores, classes, valid):
  n = boxes.shape[0]
  if boxes.ndim != 2 or boxes.shape[1] != 4:
    raise InputError(f'boxes must have shape [N, 4], got {tuple(boxes.shape)}.')
  if scores.shape != (n,) or classes.shape != (n,) or valid.shape != (n,):
    raise InputError(f'scores, classes and valid must have shape [{n}] to match boxes [{n}, 4].')


def nms(boxes: jax.Array, scores: jax.Array, classes: jax.Array, valid: jax.Array, *,
        iou_threshold: float | jax.Array) -> jax.Array:
  """Per-class greedy NMS of a padded box set -> keep mask `[N]` bool (False for padding).

  Args:
    boxes: `[N, 4]` boxes in the project convention; inverted boxes are empty (IoU 0), never suppressing.
    scores: `[N]` confidences. A candidate with a non-finite score or coordinate (NaN, +-inf) is dropped: never
      kept, never suppressing (`inference.nonfinite`).
    classes: `[N]` int; boxes only suppress boxes of their own class.
    valid: `[N]` bool, False for padding.
    iou_threshold: a box is suppressed when its IoU with a kept box is > this.
  """
  boxes = jnp.asarray(boxes, jnp.float32)
  scores, classes = jnp.asarray(scores, jnp.float32), jnp.asarray(classes, jnp.int32)
  valid = jnp.asarray(valid, bool)
  _check(boxes, scores, classes, valid)
  if boxes.shape[0] == 0:
    return valid
  return _nms_jit(boxes, scores, classes, valid, jnp.float32(iou_threshold))

