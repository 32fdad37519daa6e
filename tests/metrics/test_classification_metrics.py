"""Hand-worked tests of top-k classification error and its streaming counts."""

import numpy as np
import pytest

from overfeat_jax.errors import InputError
from overfeat_jax.metrics import classification

# Row 0: true class 2 (0.4); one class (0.5) is higher -> rank 1.
# Row 1: all tied; true class 1; class 0 ties and has a smaller index -> rank 1.
# Row 2: true class 1 (0.1); 0.2 and 0.7 are higher -> rank 2.
SCORES = np.array([[0.1, 0.5, 0.4], [0.3, 0.3, 0.3], [0.2, 0.1, 0.7]])
LABELS = np.array([2, 1, 1])


def test_ranks_and_errors_by_hand():
  np.testing.assert_array_equal(classification.true_class_rank(SCORES, LABELS), [1, 1, 2])
  # top-1: no row has rank 0 -> error 3/3; top-2: rows 0 and 1 -> error 1/3; top-3: every row -> 0.
  errors = classification.topk_errors(SCORES, LABELS, ks=(1, 2, 3))
  assert errors == pytest.approx({'top1_error': 1.0, 'top2_error': 1 / 3, 'top3_error': 0.0})


def test_ties_go_to_the_lower_class_index():
  # Constant scores over 10 classes: classes 0..4 are the top 5: label 4 is right at k = 5, label 5 is not.
  scores = np.zeros((2, 10))
  errors = classification.topk_errors(scores, np.array([4, 5]), ks=(1, 5))
  assert errors == {'top1_error': 1.0, 'top5_error': 0.5}


def test_streaming_with_padding_equals_one_shot():
  counts = classification.TopKCounts.empty((1, 2))
  counts = counts.update(SCORES[:2], LABELS[:2])
  # Second batch: row 2 plus one padded example with label -1, masked out.
  padded_scores = np.concatenate([SCORES[2:], np.zeros((1, 3))])
  counts = counts.update(padded_scores, np.array([1, -1]), mask=np.array([True, False]))
  assert counts.count == 3
  assert counts.correct == (0, 2)
  assert counts.errors() == pytest.approx(classification.topk_errors(SCORES, LABELS, ks=(1, 2)))
  # Merging per-host counts gives the same as one stream.
  a = classification.TopKCounts.empty((1, 2)).update(SCORES[:1], LABELS[:1])
  b = classification.TopKCounts.empty((1, 2)).update(SCORES[1:], LABELS[1:])
  assert a.merge(b) == classification.TopKCounts.empty((1, 2)).update(SCORES, LABELS)


def test_empty_counts_have_no_error_rate():
  errors = classification.TopKCounts.empty().errors()
  assert all(np.isnan(v) for v in errors.values())


@pytest.mark.parametrize('scores,labels', [
    (np.zeros((2, 3)), np.array([0, 3])),  # label out of range
    (np.zeros((2, 3)), np.array([0, -1])),  # unlabelled example not masked
    (np.full((1, 3), np.nan), np.array([0])),  # NaN scores
    (np.zeros(3), np.array([0])),  # not [N, C]
])
def test_bad_input_raises(scores, labels):
  with pytest.raises(InputError):
    classification.topk_errors(scores, labels)
