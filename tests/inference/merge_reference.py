"""Greedy OverFeat merge and NMS as plain sequential Python: the specifications of `merge.py` and `nms.py`.

Same algorithm and same float32 operation order as `merge.py` (module docstring there), written without
vectorisation or caching: every step scans all pairs (i < j) in row-major order and keeps the first strict
minimum, so ties go to the smallest (i, j). O(N^3) overall: meant for tests and for timing the jitted version.
"""

import math
from typing import NamedTuple

import numpy as np

from overfeat_jax.errors import InputError

_F = np.float32
_ZERO, _HALF, _ONE = _F(0.0), _F(0.5), _F(1.0)
DIAGONAL_FLOOR = _F(1e-6)
TINY = np.finfo(np.float32).tiny  # score sums below it average as 'pair' (merge.py's module docstring)
AVERAGES = ('pair', 'score')


class ReferenceResult(NamedTuple):
  boxes: np.ndarray  # [N, 4] float32
  scores: np.ndarray  # [N] float32
  classes: np.ndarray  # [N] int32
  valid: np.ndarray  # [N] bool
  pairs: list[tuple[int, int]]  # the (i, j) merged at each step


def _wh(b):
  return max(b[2] - b[0], _ZERO), max(b[3] - b[1], _ZERO)


def _center_distance(a, b):
  dx = (a[0] + a[2]) * _HALF - (b[0] + b[2]) * _HALF
  dy = (a[1] + a[3]) * _HALF - (b[1] + b[3]) * _HALF
  return np.sqrt(dx * dx + dy * dy)


def _intersection(a, b):
  iw = max(min(a[2], b[2]) - max(a[0], b[0]), _ZERO)
  ih = max(min(a[3], b[3]) - max(a[1], b[1]), _ZERO)
  return iw * ih


def iou(a, b) -> np.float32:
  """IoU of two boxes (sequences of 4 float32), 0 for an empty union; same op order as `box_ops.iou`."""
  inter = _intersection(a, b)
  (wa, ha), (wb, hb) = _wh(a), _wh(b)
  union = wa * ha + wb * hb - inter
  if not union > _ZERO:
    return _ZERO
  return min(max(inter / union, _ZERO), _ONE)


def _diagonal(b):
  w, h = _wh(b)
  return np.sqrt(w * w + h * h)


def literal_score(a, b) -> np.float32:
  """Centre distance + intersection area (the paper's words read literally)."""
  return _center_distance(a, b) + _intersection(a, b)


def overlap_score(a, b) -> np.float32:
  """Centre distance / max(mean diagonal, floor) + (1 - IoU)."""
  mean_diag = (_diagonal(a) + _diagonal(b)) * _HALF
  return _center_distance(a, b) / max(mean_diag, DIAGONAL_FLOOR) + (_ONE - iou(a, b))


SCORE_FUNCTIONS = {'literal': literal_score, 'overlap': overlap_score}


def _best_pair(boxes, classes, valid, fn):
  """Row-major scan for the first strictly smallest finite score among valid same-class pairs."""
  best, bi, bj = math.inf, -1, -1
  n = len(boxes)
  for i in range(n):
    if not valid[i]:
      continue
    for j in range(i + 1, n):
      if not valid[j] or classes[j] != classes[i]:
        continue
      s = fn(boxes[i], boxes[j])
      if math.isfinite(s) and s < best:
        best, bi, bj = s, i, j
  return best, bi, bj


def _average(b_i, b_j, s_i, s_j, average: str) -> list:
  """The merged box of two boxes (lists of 4 float32) with scores `s_i`, `s_j` >= 0."""
  pair = [(b_i[k] + b_j[k]) * _HALF for k in range(4)]
  total = s_i + s_j
  if average == 'pair' or not total >= TINY:
    return pair
  inverse = _ONE / max(total, TINY)  # the jitted merge multiplies by the reciprocal (XLA's rewrite)
  return [(s_i * b_i[k] + s_j * b_j[k]) * inverse for k in range(4)]


def _check_scores(scores: np.ndarray, valid: np.ndarray) -> None:
  """Confidence weights must be finite and >= 0 (class probabilities); padding is not checked."""
  real = scores[valid]
  if not np.all(np.isfinite(real) & (real >= 0)):
    raise InputError("average='score' needs finite scores >= 0 (class probabilities); got "
                     f'min {real.min()!r}, max {real.max()!r}.')


def merge_boxes_reference(boxes, scores, classes, valid, *, threshold: float, score_fn: str = 'overlap',
                          average: str = 'pair', max_merges: int | None = None) -> ReferenceResult:
  """Sequential greedy merge; arguments as `overfeat_jax.inference.merge.merge_boxes`.

  `max_merges` stops early (the benchmark uses it to time a prefix of the merges at large N).
  """
  if score_fn not in SCORE_FUNCTIONS:
    raise InputError(f'score_fn must be one of {sorted(SCORE_FUNCTIONS)}, got {score_fn!r}.')
  if average not in AVERAGES:
    raise InputError(f'average must be one of {AVERAGES}, got {average!r}.')
  fn = SCORE_FUNCTIONS[score_fn]
  box_list = [[_F(v) for v in row] for row in np.asarray(boxes, np.float32).reshape(-1, 4)]
  scores = np.asarray(scores, np.float32).reshape(-1)
  if average == 'score':
    _check_scores(scores, np.asarray(valid, bool).reshape(-1))
  score_list = [_F(v) for v in scores]
  class_list = [int(c) for c in np.asarray(classes)]
  valid_list = [bool(v) for v in np.asarray(valid)]
  t = _F(threshold)
  pairs = []
  while max_merges is None or len(pairs) < max_merges:
    best, i, j = _best_pair(box_list, class_list, valid_list, fn)
    if i < 0 or best > t:
      break
    box_list[i] = _average(box_list[i], box_list[j], score_list[i], score_list[j], average)
    score_list[i] = score_list[i] + score_list[j]
    valid_list[j] = False
    pairs.append((i, j))
  return ReferenceResult(np.array(box_list, np.float32).reshape(-1, 4), np.array(score_list, np.float32),
                         np.array(class_list, np.int32), np.array(valid_list, bool), pairs)


def nms_reference(boxes, scores, classes, valid, *, iou_threshold: float) -> np.ndarray:
  """Per-class greedy NMS by sequential loops over a stable descending-score order -> keep mask [N]."""
  box_list = [[_F(v) for v in row] for row in np.asarray(boxes, np.float32).reshape(-1, 4)]
  scores = np.asarray(scores, np.float32)
  classes, dropped = np.asarray(classes), ~np.asarray(valid, bool)
  order = sorted(range(len(box_list)), key=lambda k: -scores[k])  # Python's sort is stable: ties by index.
  keep = np.zeros(len(box_list), bool)
  t = _F(iou_threshold)
  for k in order:
    if dropped[k]:
      continue
    keep[k] = dropped[k] = True
    for m in order:
      if not dropped[m] and classes[m] == classes[k] and iou(box_list[k], box_list[m]) > t:
        dropped[m] = True
  return keep
