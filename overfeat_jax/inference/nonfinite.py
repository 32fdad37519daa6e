"""The inference path's one rule for candidates with non-finite numbers (docs/metrics_and_merge.md).

A network that diverged (or one trained with `skip_nonfinite` that still emits NaN for some inputs) gives NaN
or +-inf class scores, and a regressor can overflow into NaN or inf coordinates. Greedy loops over such
candidates used to spin forever (a NaN never compares equal to the running maximum) or spread NaN into merged
boxes and scores. The rule, applied at the entry of NMS (`nms`), the greedy merge (`merge`) and the final
ranking (`localize.top_guesses`):

- a candidate takes part only when its score AND its four coordinates are finite; any other candidate is
  DROPPED (treated as padding: never kept, never merged, never ranked) and COUNTED (`num_dropped`, reported as
  `num_nonfinite` by `localize.localize` and `detect.detect`);
- an inverted box (`x2 < x1` or `y2 < y1`, finite) is kept as it is: it is EMPTY (zero width or height, zero
  area, IoU 0 with every box, `box_ops`), so it never suppresses and is never suppressed by NMS, and the greedy
  merge pairs it with another box only through the centre-distance term of the match score.

Everything here is traceable (jit, vmap); nothing raises, because a traced value cannot be inspected. The
host-side metrics, which can, refuse non-finite input with one `InputError` instead (`metrics.boxes`).
"""

import jax
import jax.numpy as jnp


def usable(boxes: jax.Array, scores: jax.Array, valid: jax.Array) -> jax.Array:
  """`valid [..., N]` restricted to candidates with a finite score `[..., N]` and finite box `[..., N, 4]`."""
  return valid & jnp.isfinite(scores) & jnp.isfinite(boxes).all(axis=-1)


def num_dropped(boxes: jax.Array, scores: jax.Array, valid: jax.Array) -> jax.Array:
  """Number of `valid` candidates that `usable` drops -> `[...]` int32 (one count per leading index)."""
  return (valid & ~usable(boxes, scores, valid)).sum(axis=-1).astype(jnp.int32)
