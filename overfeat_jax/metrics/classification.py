"""ILSVRC classification error: top-1 and top-5 (spec section 7), on the host in numpy.

An example is correct at k when its true class is among the k best guesses. Ties are broken deterministically
by class index, as a stable sort by decreasing score (and `jax.lax.top_k`) would: the rank of the true class
is the number of classes with a strictly higher score plus the number of classes with an EQUAL score and a
smaller index. So a constant score vector puts classes 0..k-1 in the top k. NaN scores are rejected.

`TopKCounts` streams the same numbers over batches (with a mask for padded examples) and merges across hosts.
"""

import dataclasses

import numpy as np

from overfeat_jax.errors import InputError


def _check(scores, labels) -> tuple[np.ndarray, np.ndarray]:
  scores, labels = np.asarray(scores), np.asarray(labels)
  if scores.ndim != 2 or labels.shape != scores.shape[:1]:
    raise InputError(f'scores must be [N, C] and labels [N], got {scores.shape} and {labels.shape}.')
  if np.isnan(scores).any():
    raise InputError('scores contain NaN.')
  return scores, labels.astype(np.int64)


def true_class_rank(scores, labels) -> np.ndarray:
  """0-based rank of the true class in each row of `scores [N, C]` (ties by class index) -> `[N]` int."""
  scores, labels = _check(scores, labels)
  if labels.size and (labels.min() < 0 or labels.max() >= scores.shape[1]):
    raise InputError(f'labels must be in [0, {scores.shape[1]}); mask out unlabelled (-1) examples.')
  true = np.take_along_axis(scores, labels[:, None], axis=1)  # [N, 1]
  higher = (scores > true).sum(axis=1)
  tied_before = ((scores == true) & (np.arange(scores.shape[1])[None, :] < labels[:, None])).sum(axis=1)
  return higher + tied_before


def topk_errors(scores, labels, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
  """Top-k error rates of `scores [N, C]` vs `labels [N]`: `{'top1_error': .., 'top5_error': ..}`."""
  return TopKCounts.empty(ks).update(scores, labels).errors()


@dataclasses.dataclass(frozen=True)
class TopKCounts:
  """Streaming top-k counts: immutable; `update` per batch, `merge` across hosts, `errors` at the end."""
  ks: tuple[int, ...]
  correct: tuple[int, ...]
  count: int

  @classmethod
  def empty(cls, ks: tuple[int, ...] = (1, 5)) -> 'TopKCounts':
    if not ks or min(ks) < 1:
      raise InputError(f'ks must be positive integers, got {ks}.')
    return cls(tuple(ks), (0,) * len(ks), 0)

  def update(self, scores, labels, mask=None) -> 'TopKCounts':
    """Adds a batch `scores [B, C]`, `labels [B]`; `mask [B]` False marks padding (its label may be -1)."""
    scores, labels = _check(scores, labels)
    keep = np.ones(labels.shape, bool) if mask is None else np.asarray(mask, bool)
    if keep.shape != labels.shape:
      raise InputError(f'mask must have shape {labels.shape}, got {keep.shape}.')
    rank = true_class_rank(scores[keep], labels[keep])
    correct = tuple(c + int((rank < k).sum()) for c, k in zip(self.correct, self.ks))
    return TopKCounts(self.ks, correct, self.count + int(keep.sum()))

  def merge(self, other: 'TopKCounts') -> 'TopKCounts':
    if other.ks != self.ks:
      raise InputError(f'cannot merge top-k counts for {self.ks} and {other.ks}.')
    correct = tuple(a + b for a, b in zip(self.correct, other.correct))
    return TopKCounts(self.ks, correct, self.count + other.count)

  def errors(self) -> dict[str, float]:
    """Error rates in [0, 1]; NaN when no example was counted (there is no error rate of nothing)."""
    return {f'top{k}_error': (1.0 - c / self.count) if self.count else float('nan')
            for k, c in zip(self.ks, self.correct)}
