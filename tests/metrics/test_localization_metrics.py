"""Hand-worked tests of the ILSVRC localization error and of the devkit box conversion."""

import numpy as np
import pytest

from overfeat_jax.errors import InputError
from overfeat_jax.metrics import boxes as box_lib
from overfeat_jax.metrics import localization


def _devkit_iou(a, b):
  """IoU exactly as the ILSVRC devkit computes it on 1-based inclusive boxes (the `+ 1` formulas)."""
  iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
  ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
  if iw <= 0 or ih <= 0:
    return 0.0
  ua = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - iw * ih
  return iw * ih / ua


def test_devkit_conversion_at_the_border():
  # Devkit pixel 5 alone (5,5,5,5) covers [4, 5) in the project convention: area 1 in both.
  np.testing.assert_array_equal(box_lib.from_devkit([[5, 5, 5, 5]]), [[4, 4, 5, 5]])
  assert box_lib.area(box_lib.from_devkit([[5, 5, 5, 5]]))[0] == 1.0
  # (1,1,10,10) is 10 x 10 pixels for the devkit ((10 - 1 + 1)^2 = 100) and (0,0,10,10) here.
  np.testing.assert_array_equal(box_lib.from_devkit([[1, 1, 10, 10]]), [[0, 0, 10, 10]])
  np.testing.assert_array_equal(box_lib.to_devkit([[0, 0, 10, 10]]), [[1, 1, 10, 10]])
  # (5,5,5,5) vs (5,5,6,6): devkit iw = 5 - 5 + 1 = 1, ih = 1, union 1 + 4 - 1 = 4 -> 0.25.
  got = box_lib.pairwise_iou(box_lib.from_devkit([[5, 5, 5, 5]]), box_lib.from_devkit([[5, 5, 6, 6]]))
  assert got[0, 0] == 0.25 == _devkit_iou([5, 5, 5, 5], [5, 5, 6, 6])


def test_project_iou_equals_devkit_iou_on_random_integer_boxes():
  rng = np.random.default_rng(0)
  a = rng.integers(1, 30, (200, 2))
  a = np.concatenate([a, a + rng.integers(0, 20, (200, 2))], 1)  # inclusive, so xmax >= xmin
  b = rng.integers(1, 30, (200, 2))
  b = np.concatenate([b, b + rng.integers(0, 20, (200, 2))], 1)
  got = np.diag(box_lib.pairwise_iou(box_lib.from_devkit(a), box_lib.from_devkit(b)))
  np.testing.assert_allclose(got, [_devkit_iou(x, y) for x, y in zip(a, b)], rtol=1e-12)


def _images():
  """Five images worked by hand (devkit boxes converted at the border, as a reader would)."""
  d = box_lib.from_devkit
  return [
      # 1. gt label 3 at devkit (1,1,10,10) = (0,0,10,10). Guess 1: wrong class. Guess 2: right class, box
      #    (5,0,15,10): intersection 5 x 10 = 50, union 150 -> IoU 1/3 < 0.5. Localization 1, classification 0
      ([5, 3], np.concatenate([d([[1, 1, 10, 10]]), d([[6, 1, 15, 10]])]), [3], d([[1, 1, 10, 10]])),
      # 2. gt labels 2 (two boxes) and 4. Guess (2, (52,50,62,60)) vs (50,50,60,60): 80 / 120 = 0.67 -> right.
      #    Guess (4, (0,0,8,16)) vs (0,0,8,8): 64 / 128 = 0.5 exactly -> right (>= 0.5). Both labels 0 -> 0.
      ([2, 4], [[52, 50, 62, 60], [0, 0, 8, 16]],
       [2, 2, 4], [[0, 0, 20, 20], [50, 50, 60, 60], [0, 0, 8, 8]]),
      # 3. gt label 1; five wrong guesses, the right one is sixth and is ignored -> 1 and 1.
      ([7, 7, 7, 7, 7, 1], [[10, 10, 30, 30]] * 6, [1], [[10, 10, 30, 30]]),
      # 4. no ground truth: skipped.
      ([0], [[0, 0, 1, 1]], np.zeros(0), np.zeros((0, 4))),
      # 5. one real guess (exact box) and padding -> 0 and 0. The gt list is padded with label -1.
      ([0, -1, -1], [[3, 3, 9, 9], [0, 0, 0, 0], [0, 0, 0, 0]], [0, -1], [[3, 3, 9, 9], [0, 0, 0, 0]]),
  ]


def test_per_image_errors_by_hand():
  expected = [(1.0, 0.0), (0.0, 0.0), (1.0, 1.0), None, (0.0, 0.0)]
  for image, want in zip(_images(), expected):
    assert localization.image_errors(*image) == want
  # Image 2 with the label-4 guess at (0,0,8,17): 64 / 136 = 0.47 -> label 4 missed; mean over 2 labels = 0.5.
  cls, boxes, gl, gb = _images()[1]
  assert localization.image_errors(cls, [boxes[0], [0, 0, 8, 17]], gl, gb) == (0.5, 0.0)
  # Image 3 with six guesses allowed: the sixth is right.
  assert localization.image_errors(*_images()[2], max_guesses=6) == (0.0, 0.0)


def test_task_error_and_streaming():
  # Over the 4 images with ground truth: localization (1 + 0 + 1 + 0) / 4, classification (0 + 0 + 1 + 0) / 4.
  result = localization.localization_error(*zip(*_images()))
  assert result == localization.LocalizationResult(0.5, 0.25, 4, 1)
  # Batch layout: images 1 and 3 padded to G = 6 guesses and M = 1 gt box, plus one masked padding image.
  guess_cls = np.array([[5, 3, -1, -1, -1, -1], [7, 7, 7, 7, 7, 1], [-1] * 6])
  guess_boxes = np.zeros((3, 6, 4))
  guess_boxes[0, :2] = _images()[0][1]
  guess_boxes[1] = 10.0
  guess_boxes[1, :, 2:] = 30.0
  counts = localization.LocalizationCounts().update_batch(
      guess_cls, guess_boxes, np.array([[3], [1], [-1]]),
      np.array([[[0, 0, 10, 10]], [[10, 10, 30, 30]], [[0] * 4]]), mask=np.array([True, True, False]))
  assert counts.result() == localization.LocalizationResult(1.0, 0.5, 2, 0)
  merged = counts.merge(localization.LocalizationCounts().add_image(*_images()[1]))
  assert merged.result() == localization.LocalizationResult(2 / 3, 1 / 3, 3, 0)


def test_bad_input_raises():
  with pytest.raises(InputError):
    localization.image_errors([1, 2], [[0, 0, 1, 1]], [1], [[0, 0, 1, 1]])  # 2 guesses, 1 box
  with pytest.raises(InputError):
    localization.image_errors([1], [[0, 0, np.nan, 1]], [1], [[0, 0, 1, 1]])
  with pytest.raises(InputError):
    localization.localization_error([[1]], [[[0, 0, 1, 1]]], [], [])
