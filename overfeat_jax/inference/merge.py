"""OverFeat's greedy box merge (paper Section 4.3, spec 5 (d)), jit-compiled with static shapes.

The paper repeatedly merges the pair of boxes with the lowest `match_score` until the lowest score exceeds a
threshold `t`. Boxes only merge with boxes of the same class. Merging pair (i, j), i < j, replaces box i by
an average of the two (see `average` below), gives it the SUM of their scores (so a merged box's score is the
sum of the class outputs of all windows merged into it) and invalidates box j. Among equal scores the smallest
(i, j) in row-major order wins, exactly as in the sequential test oracle
`tests/inference/merge_reference.py`.

Two ways to average the pair (choose by name, see `AVERAGES`):
- `'pair'`: `(b_i + b_j) / 2`, the paper's "averaging their coordinates". After a chain of merges the newest
  window gets half the weight of a cluster of many windows, so merged boxes drift towards late members.
- `'score'`: `(s_i * b_i + s_j * b_j) / (s_i + s_j)` with the scores before the update. Since a merged box's
  score is the sum of its members' confidences, this is the confidence-weighted mean of ALL member windows'
  boxes, whatever the merge order. Scores must be >= 0 (they are class probabilities here; negative weights
  would extrapolate); the reference checks this. Where `s_i + s_j` is below the smallest normal float32 (two
  zero-confidence windows) the plain pair average is used instead, so such boxes do not collapse to the
  origin.

Two readings of `match_score` (choose by name, see `SCORE_FUNCTIONS`):
- `'literal'`: the paper's words read literally: centre distance + intersection area (pixels + pixels^2). More
  overlap gives a HIGHER score, i.e. overlapping boxes are LESS likely to merge, which contradicts the paper's
  intent; it is kept so that the reading can be measured.
- `'overlap'`: centre distance divided by the mean of the two boxes' diagonals (floored at `DIAGONAL_FLOOR`),
  plus `1 - IoU`. Overlap lowers the score; the score is scale free, in [0, inf), and 0 only for identical
  positive-area boxes. `t` around 0.5-1.0 is a sensible range.

Cost: the N x N score matrix is built once (O(N^2) memory: 100 MB at N = 5000 in float32); each merge then
updates only row and column i and j in O(N), and the cached minimum of every row is repaired incrementally (a
row is rescanned only when its cached minimum pointed at i or j). Match scores that are NaN or inf (overflow on
huge boxes) are treated as "never merge".

Non-finite input: a candidate whose confidence or box coordinate is NaN or +-inf is dropped on entry (it comes
out with `valid` False, never merged; `inference.nonfinite`, which also counts them). Inverted boxes are empty
(`box_ops`) and merge only through the centre-distance term.
"""

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from overfeat_jax import box_ops
from overfeat_jax.errors import InputError
from overfeat_jax.inference import nonfinite

# Mean diagonals below this (degenerate boxes) are floored so that the normalised distance stays finite.
DIAGONAL_FLOOR = 1e-6
# Score sums below this (the smallest normal float32; XLA on CPU flushes subnormals to zero) average as
# 'pair'.
TINY = float(jnp.finfo(jnp.float32).tiny)
AVERAGES = ('pair', 'score')


def literal_score(a: jax.Array, b: jax.Array) -> jax.Array:
  """Paper wording: centre distance + intersection area of `a [..., 4]`, `b [..., 4]` (broadcasting)."""
  return box_ops.center_distance(a, b) + box_ops.intersection(a, b)


def overlap_score(a: jax.Array, b: jax.Array) -> jax.Array:
  """Centre distance / mean diagonal + (1 - IoU) of `a [..., 4]`, `b [..., 4]` (broadcasting)."""
  mean_diag = (box_ops.diagonal(a) + box_ops.diagonal(b)) * 0.5
  return box_ops.center_distance(a, b) / jnp.maximum(mean_diag, DIAGONAL_FLOOR) + (1.0 - box_ops.iou(a, b))


SCORE_FUNCTIONS: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    'literal': literal_score,
    'overlap': overlap_score,
}


class MergeResult(NamedTuple):
  """The merged set, in the input's padded layout (merged boxes keep the index of their lowest member)."""
  boxes: jax.Array  # [N, 4] float32
  scores: jax.Array  # [N] float32, summed over merged members
  classes: jax.Array  # [N] int32
  valid: jax.Array  # [N] bool, False for padding and for boxes merged into another
  pairs: jax.Array  # [N, 2] int32, the (i, j) merged at each step, -1 after the last
  num_merges: jax.Array  # [] int32


class _State(NamedTuple):
  s: jax.Array  # [N, N] score of (row, col) for valid same-class pairs with row < col, else inf
  row_min: jax.Array  # [N] minimum of each row of s
  row_arg: jax.Array  # [N] smallest column attaining row_min
  boxes: jax.Array
  scores: jax.Array
  valid: jax.Array
  pairs: jax.Array
  n: jax.Array


def _masked(raw: jax.Array, ok: jax.Array) -> jax.Array:
  """Scores where `ok` and finite, inf elsewhere (NaN/inf scores never merge)."""
  return jnp.where(ok & jnp.isfinite(raw), raw, jnp.inf)


def _initial_state(boxes, scores, classes, valid, score_fn) -> _State:
  n = boxes.shape[0]
  idx = jnp.arange(n)
  raw = score_fn(boxes[:, None, :], boxes[None, :, :])  # [N, N]
  ok = valid[:, None] & valid[None, :] & (classes[:, None] == classes[None, :])
  ok &= idx[:, None] < idx[None, :]
  s = _masked(raw, ok)
  return _State(s, s.min(axis=1), jnp.argmin(s, axis=1).astype(jnp.int32), boxes, scores, valid,
                jnp.full((n, 2), -1, jnp.int32), jnp.zeros((), jnp.int32))


def _rescan_dirty_rows(s, row_min, row_arg, dirty):
  """Recomputes the cached minimum of each row flagged in `dirty [N]` from the score matrix, one at a time."""
  def body(c):
    rm, ra, d = c
    k = jnp.argmax(d)
    row = s[k]
    return rm.at[k].set(row.min()), ra.at[k].set(jnp.argmin(row).astype(jnp.int32)), d.at[k].set(False)
  rm, ra, _ = jax.lax.while_loop(lambda c: c[2].any(), body, (row_min, row_arg, dirty))
  return rm, ra


def _average(b_i, b_j, s_i, s_j, average: str) -> jax.Array:
  """The merged box of `b_i [4]`, `b_j [4]` (module docstring); same float32 operations as the reference."""
  pair = (b_i + b_j) * 0.5
  if average == 'pair':
    return pair
  total = s_i + s_j
  # Bit-identical to the reference: the products are kept out of fused multiply-adds (`box_ops`), and the
  # division is written as a product with the reciprocal, which is what XLA rewrites a division by a
  # broadcast scalar into anyway.
  weighted = (box_ops.rounded(s_i * b_i) + box_ops.rounded(s_j * b_j)) * (1.0 / jnp.maximum(total, TINY))
  return jnp.where(total >= TINY, weighted, pair)


def _merge_step(st: _State, classes: jax.Array, score_fn, average: str) -> _State:
  """Merges the best pair (i, j) and repairs the score matrix and the row minima in O(N) (plus dirty rows)."""
  idx = jnp.arange(st.boxes.shape[0])
  i = jnp.argmin(st.row_min).astype(jnp.int32)
  j = st.row_arg[i]
  new_box = _average(st.boxes[i], st.boxes[j], st.scores[i], st.scores[j], average)
  boxes = st.boxes.at[i].set(new_box)
  scores = st.scores.at[i].set(st.scores[i] + st.scores[j])
  valid = st.valid.at[j].set(False)
  pairs = st.pairs.at[st.n].set(jnp.stack([i, j]))

  fresh = _masked(score_fn(new_box[None, :], boxes), valid & (classes == classes[i]) & (idx != i))  # [N]
  row_i = jnp.where(idx > i, fresh, jnp.inf)
  col_i = jnp.where(idx < i, fresh, jnp.inf)
  s = st.s.at[i, :].set(row_i).at[:, i].set(col_i).at[j, :].set(jnp.inf).at[:, j].set(jnp.inf)

  # Rows k < i gained a new candidate col_i[k]; rows whose minimum sat at column i (and got worse) or at
  # column j
  # (now inf) must be rescanned. Ties keep the smallest column, as a row-major scan would.
  old_min, old_arg = st.row_min, st.row_arg
  dirty = ((old_arg == j) | ((old_arg == i) & (col_i > old_min))) & jnp.isfinite(old_min)
  better = (col_i < old_min) | ((col_i == old_min) & (i < old_arg))
  row_min = jnp.where(better, col_i, old_min)
  row_arg = jnp.where(better, i, old_arg)
  row_min = row_min.at[i].set(row_i.min()).at[j].set(jnp.inf)
  row_arg = row_arg.at[i].set(jnp.argmin(row_i).astype(jnp.int32)).at[j].set(0)
  dirty = dirty.at[i].set(False).at[j].set(False)
  row_min, row_arg = _rescan_dirty_rows(s, row_min, row_arg, dirty)
  return _State(s, row_min, row_arg, boxes, scores, valid, pairs, st.n + 1)


@functools.partial(jax.jit, static_argnames=('score_fn', 'average'))
def _merge_jit(boxes, scores, classes, valid, threshold, score_fn: str, average: str) -> MergeResult:
  fn = SCORE_FUNCTIONS[score_fn]
  # Candidates with a non-finite score or coordinate are dropped on entry (`nonfinite`): they would turn
  # merged boxes and summed scores into NaN. Each merge invalidates one box, so at most N - 1 merges happen;
  # the bound on `n` makes the loop end whatever the input.
  st = _initial_state(boxes, scores, classes, nonfinite.usable(boxes, scores, valid), fn)

  def cond(st: _State):
    best = st.row_min.min()
    return (best <= threshold) & jnp.isfinite(best) & (st.n < boxes.shape[0] - 1)

  st = jax.lax.while_loop(cond, lambda st: _merge_step(st, classes, fn, average), st)
  return MergeResult(st.boxes, st.scores, classes, st.valid, st.pairs, st.n)


def merge_boxes(boxes: jax.Array, scores: jax.Array, classes: jax.Array, valid: jax.Array, *,
                threshold: float | jax.Array, score_fn: str = 'overlap',
                average: str = 'pair') -> MergeResult:
  """Greedy OverFeat merge of a padded box set (compiled once per N, `score_fn` and `average`).

  `threshold` is traced: one compiled program serves every threshold.

  Args:
    boxes: `[N, 4]` boxes in the project convention (a non-finite one is dropped, module docstring).
    scores: `[N]` class confidence (>= 0) of the window that produced each box (a non-finite one is dropped).
    classes: `[N]` int class of each box; boxes merge only within a class.
    valid: `[N]` bool, False for padding.
    threshold: stop when the best pair's match score is > threshold.
    score_fn: `'overlap'` or `'literal'` (module docstring).
    average: `'pair'` (paper) or `'score'` (confidence-weighted) merged box (module docstring).

  Returns:
    A `MergeResult`; the surviving boxes are those with `valid`.
  """
  if score_fn not in SCORE_FUNCTIONS:
    raise InputError(f'score_fn must be one of {sorted(SCORE_FUNCTIONS)}, got {score_fn!r}.')
  if average not in AVERAGES:
    raise InputError(f'average must be one of {AVERAGES}, got {average!r}.')
  boxes = jnp.asarray(boxes, jnp.float32)
  if boxes.ndim != 2 or boxes.shape[1] != 4:
    raise InputError(f'boxes must have shape [N, 4], got {tuple(boxes.shape)}.')
  n = boxes.shape[0]
  scores, classes = jnp.asarray(scores, jnp.float32), jnp.asarray(classes, jnp.int32)
  valid = jnp.asarray(valid, bool)
  if scores.shape != (n,) or classes.shape != (n,) or valid.shape != (n,):
    raise InputError(f'scores, classes and valid must have shape [{n}] to match boxes [{n}, 4].')
  if n == 0:  # Nothing to merge (and argmin of an empty row is undefined).
    return MergeResult(boxes, scores, classes, valid, jnp.full((0, 2), -1, jnp.int32),
                       jnp.zeros((), jnp.int32))
  return _merge_jit(boxes, scores, classes, valid, jnp.float32(threshold), score_fn=score_fn,
                    average=average)
