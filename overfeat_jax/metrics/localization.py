"""ILSVRC localization error (spec section 7; devkit `eval_localization_flat.m`), on the host in numpy.

Each image gets up to `max_guesses` (5) guesses, each a class and one box; like the devkit, guesses after the
first `max_guesses` are ignored. A guess is right for a ground-truth label when its class equals the label AND
its box has IoU >= 0.5 with at least one ground-truth box of that label. An image's error is, for each
distinct ground-truth label, the minimum over guesses of (0 if right else 1), averaged over the image's
distinct labels; the task error is the mean over images. The classification-only error is the same with the
box condition dropped (the devkit's flat classification error). Boxes are in the project convention; its IoU
equals the devkit's inclusive-pixel IoU exactly (see `metrics/boxes.py`), so the devkit's 1-based boxes only
need `boxes.from_devkit` at the border. Images without any ground-truth box have no error defined: they are
skipped and counted in `num_skipped`. Guesses with class -1 are padding (fewer than `max_guesses` guesses);
their boxes are not read. A NaN or infinite coordinate in a real guess or a ground-truth box is refused with
one `InputError`; inverted boxes are empty (IoU 0: never right).
"""

import dataclasses

import numpy as np

from overfeat_jax.errors import InputError
from overfeat_jax.metrics import boxes as box_lib


def image_errors(guess_classes, guess_boxes, gt_labels, gt_boxes, *, iou_threshold: float = 0.5,
                 max_guesses: int = 5) -> tuple[float, float] | None:
  """(localization error, classification error) of one image in [0, 1], or None if it has no ground truth.

  Args:
    guess_classes: `[G]` int, best first, -1 for an unused slot; guesses after the first `max_guesses` are
      ignored, as in the devkit (so `max_guesses=1..5` gives its error-vs-number-of-guesses curve).
    guess_boxes: `[G, 4]` boxes of the guesses.
    gt_labels: `[M]` int label of each ground-truth box (negative entries are padding and ignored).
    gt_boxes: `[M, 4]` ground-truth boxes.
  """
  guess_classes = np.asarray(guess_classes, np.int64).reshape(-1)
  guess_boxes = np.asarray(guess_boxes, np.float64)
  if guess_boxes.ndim == 2 and guess_boxes.shape == (guess_classes.size, 4):  # unused slots' boxes are not read
    guess_boxes = np.where((guess_classes >= 0)[:, None], guess_boxes, 0.0)
  guess_boxes = box_lib.as_boxes(guess_boxes, 'guess_boxes')
  gt_labels = np.asarray(gt_labels, np.int64).reshape(-1)
  gt_boxes = box_lib.as_boxes(gt_boxes, 'gt_boxes')
  if guess_boxes.shape[0] != guess_classes.size or gt_boxes.shape[0] != gt_labels.size:
    raise InputError('each guess and each ground-truth label needs exactly one box.')
  if max_guesses < 1:
    raise InputError(f'max_guesses must be at least 1, got {max_guesses}.')
  # The devkit ignores guesses after the first max_guesses.
  guess_classes, guess_boxes = guess_classes[:max_guesses], guess_boxes[:max_guesses]
  real = gt_labels >= 0
  gt_labels, gt_boxes = gt_labels[real], gt_boxes[real]
  if gt_labels.size == 0:
    return None
  iou = box_lib.pairwise_iou(guess_boxes, gt_boxes)  # [G, M]
  loc_errs, cls_errs = [], []
  for label in np.unique(gt_labels):
    of_label = gt_labels == label
    class_ok = guess_classes == label  # [G]; padding class -1 never equals a real label
    box_ok = ((iou >= iou_threshold) & of_label[None, :]).any(axis=1)  # [G]
    loc_errs.append(0.0 if (class_ok & box_ok).any() else 1.0)
    cls_errs.append(0.0 if class_ok.any() else 1.0)
  return float(np.mean(loc_errs)), float(np.mean(cls_errs))


@dataclasses.dataclass(frozen=True)
class LocalizationResult:
  error: float  # localization error in [0, 1] (NaN when no image had ground truth)
  classification_error: float  # the same guesses judged on classes only
  num_images: int  # images that entered the mean
  num_skipped: int  # images without ground truth


@dataclasses.dataclass(frozen=True)
class LocalizationCounts:
  """Streaming sums: immutable; `update_batch` per batch (project batch layout), `merge` across hosts."""
  loc_sum: float = 0.0
  cls_sum: float = 0.0
  num_images: int = 0
  num_skipped: int = 0
  iou_threshold: float = 0.5
  max_guesses: int = 5

  def add_image(self, guess_classes, guess_boxes, gt_labels, gt_boxes) -> 'LocalizationCounts':
    errs = image_errors(guess_classes, guess_boxes, gt_labels, gt_boxes, iou_threshold=self.iou_threshold,
                        max_guesses=self.max_guesses)
    if errs is None:
      return dataclasses.replace(self, num_skipped=self.num_skipped + 1)
    return dataclasses.replace(self, loc_sum=self.loc_sum + errs[0], cls_sum=self.cls_sum + errs[1],
                               num_images=self.num_images + 1)

  def update_batch(self, guess_classes, guess_boxes, box_labels, boxes, mask=None) -> 'LocalizationCounts':
    """Adds a batch (project layout; `box_labels` padded with -1); `mask [B]` False skips padded images."""
    guess_classes, box_labels = np.asarray(guess_classes), np.asarray(box_labels)
    keep = np.ones(guess_classes.shape[0], bool) if mask is None else np.asarray(mask, bool)
    out = self
    for b in np.flatnonzero(keep):
      out = out.add_image(guess_classes[b], np.asarray(guess_boxes)[b], box_labels[b], np.asarray(boxes)[b])
    return out

  def merge(self, other: 'LocalizationCounts') -> 'LocalizationCounts':
    return dataclasses.replace(self, loc_sum=self.loc_sum + other.loc_sum,
                               cls_sum=self.cls_sum + other.cls_sum,
                               num_images=self.num_images + other.num_images,
                               num_skipped=self.num_skipped + other.num_skipped)

  def result(self) -> LocalizationResult:
    n = self.num_images
    nan = float('nan')
    return LocalizationResult(self.loc_sum / n if n else nan, self.cls_sum / n if n else nan, n,
                              self.num_skipped)


def localization_error(guess_classes, guess_boxes, gt_labels, gt_boxes, *, iou_threshold: float = 0.5,
                       max_guesses: int = 5) -> LocalizationResult:
  """Localization and classification error over images given as per-image sequences (ragged allowed)."""
  if not len(guess_classes) == len(guess_boxes) == len(gt_labels) == len(gt_boxes):
    raise InputError('guess_classes, guess_boxes, gt_labels and gt_boxes must have one entry per image.')
  counts = LocalizationCounts(iou_threshold=iou_threshold, max_guesses=max_guesses)
  for image in zip(guess_classes, guess_boxes, gt_labels, gt_boxes):
    counts = counts.add_image(*image)
  return counts.result()
