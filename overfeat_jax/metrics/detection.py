"""Detection mean average precision (spec section 7), as the VOC (2010+) and ILSVRC DET devkits compute it.

Per class, the detections of all images are ranked by decreasing confidence (a stable sort: equal confidences
keep the order in which they were added). Within an image, each detection in that order is matched to at most
one ground-truth box of its class, and each ground-truth box to at most one detection:
- `matching='ilsvrc'` (ILSVRC DET `eval_detection.m`): among the ground-truth boxes NOT yet matched whose IoU
  with the detection reaches their threshold, take the one with the highest IoU (the first on ties);
- `matching='voc'` (VOC `VOCevaldet.m`): take the ground-truth box with the highest IoU among all; if that box
  is already matched, the detection is a duplicate.

Unmatched and duplicate detections are false positives. The threshold is `iou_threshold` (0.5), or with
`small_box_relaxation` the ILSVRC DET rule `min(iou_threshold, w * h / ((w + 10) * (h + 10)))` of the
ground-truth box's w, h (project convention, equal to the devkit's inclusive size). A match also needs a
positive intersection, as in the devkits, so a zero-area ground-truth box is never matched but still counts in
the recall denominator (a zero-area detection is a false positive). Boxes are NOT clipped to the image, as in
the devkits: clip them first (`overfeat_jax.box_ops.clip`) if the model can predict past the border.

AP is the area under the interpolated precision/recall curve with all points (VOC 2010+ and ILSVRC): precision
is made monotone by taking, at each recall, the maximum precision at any higher recall, and summed over the
recall steps. A class with ground truth but no detection has AP 0. Classes without any ground-truth box in the
evaluated set have no AP: they are left out of the mean and listed in `classes_without_gt`. Images with no
boxes are fine.

Blacklist (ILSVRC DET `eval_detection.m`): for each (image, class) pair of the devkit's
`ILSVRC2014_det_validation_blacklist.txt` (read by `data.imagenet_det`), the ground-truth boxes of that class
in that image are removed from the recall denominator and the detections of that class in that image are
ignored (neither true nor false positives). Pass the pair's classes per image (`add_image(...,
ignore_classes=...)`) or the pairs (`mean_average_precision(..., blacklist=...)`).

Ignored boxes (VOC `<difficult>1</difficult>`, COCO `iscrowd: 1`; own-data records' `ignore_boxes` and
`ignore_labels`): boxes of a class that are not ground truth to be found (not in the recall denominator), and
a detection of that class that matches one counts as neither a true nor a false positive. With
`matching='voc'` this is `VOCevaldet.m`'s `difficult` rule: the detection's best-overlapping box of its class is
looked for among all of them, ignored ones included, and if that box is ignored and the overlap reaches its
threshold, the detection is ignored. With `matching='ilsvrc'` it is COCO's crowd rule (`cocoeval.py`
`evaluateImg`): a detection first takes a free ground-truth box as above; only if there is none, a reached
ignored box makes it ignored. An ignored box can absorb any number of detections. Overlap is the IoU in both
(COCO measures a crowd region by intersection over the detection's area instead, so a small detection inside a
large crowd region is a false positive here and ignored there).

Non-finite input is refused with one `InputError` (the host can inspect it, unlike the jitted inference, which
drops such candidates): a NaN or +-inf detection score, or a NaN/inf coordinate (`boxes.as_boxes`). Inverted
boxes are empty: an inverted detection is a false positive, an inverted ground-truth box is never matched but
counts in the recall denominator.
"""

import dataclasses
from typing import Iterable

import numpy as np

from overfeat_jax.errors import InputError
from overfeat_jax.metrics import boxes as box_lib

MATCHING = ('ilsvrc', 'voc')


def average_precision(scores, is_tp, num_gt: int) -> float:
  """All-points interpolated AP of one class from its detections' `scores [D]` and TP flags `[D]`."""
  if num_gt <= 0:
    raise InputError('average precision needs at least one ground-truth box.')
  scores, is_tp = np.asarray(scores, np.float64), np.asarray(is_tp, bool)
  order = np.argsort(-scores, kind='stable')
  tp = np.cumsum(is_tp[order])
  fp = np.cumsum(~is_tp[order])
  recall = np.concatenate([[0.0], tp / num_gt, [1.0]])
  precision = np.concatenate([[0.0], tp / np.maximum(tp + fp, 1), [0.0]])
  precision = np.maximum.accumulate(precision[::-1])[::-1]  # max precision at any recall >= this one
  steps = np.flatnonzero(recall[1:] != recall[:-1])
  return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def iou_thresholds(gt_boxes: np.ndarray, iou_threshold: float, small_box_relaxation: bool) -> np.ndarray:
  """Per-ground-truth-box IoU thresholds `[M]` (ILSVRC DET relaxes them for boxes of a few pixels)."""
  thr = np.full(gt_boxes.shape[0], float(iou_threshold))
  if small_box_relaxation:
    w = np.maximum(gt_boxes[:, 2] - gt_boxes[:, 0], 0.0)
    h = np.maximum(gt_boxes[:, 3] - gt_boxes[:, 1], 0.0)
    thr = np.minimum(thr, w * h / ((w + 10.0) * (h + 10.0)))
  return thr


def match_image_class(det_boxes, det_scores, gt_boxes, thresholds, matching: str = 'ilsvrc',
                      ignored=None) -> tuple[np.ndarray, np.ndarray]:
  """Matches one image's detections of one class `[D, 4]`, `[D]` against its boxes `[M, 4]` (module docstring).

  `ignored [M]` (bool, default all False) marks the boxes that are ignored (difficult, crowd). Returns the TP
  flags `[D]` and the flags `[D]` of detections that matched an ignored box (neither TP nor FP).
  """
  order = np.argsort(-np.asarray(det_scores, np.float64), kind='stable')
  ignored = np.zeros(len(thresholds), bool) if ignored is None else np.asarray(ignored, bool)
  iou = box_lib.pairwise_iou(det_boxes, gt_boxes)  # [D, M]
  overlaps = box_lib.pairwise_intersection(box_lib.as_boxes(det_boxes), box_lib.as_boxes(gt_boxes)) > 0
  ok = overlaps & (iou >= thresholds[None, :])
  taken = np.zeros(len(thresholds), bool)
  is_tp, skip = np.zeros(len(order), bool), np.zeros(len(order), bool)
  for d in order:
    if matching == 'ilsvrc':
      free = ok[d] & ~taken & ~ignored
      k = int(np.argmax(np.where(free, iou[d], -1.0))) if free.any() else -1
      hit = k >= 0
      skip[d] = not hit and bool((ok[d] & ignored).any())
    else:
      k = int(np.argmax(np.where(overlaps[d], iou[d], -1.0))) if overlaps[d].any() else -1
      skip[d] = k >= 0 and ok[d, k] and ignored[k]
      hit = k >= 0 and ok[d, k] and not taken[k] and not ignored[k]
    if hit:
      taken[k] = is_tp[d] = True
  return is_tp, skip


@dataclasses.dataclass(frozen=True)
class DetectionResult:
  mean_ap: float  # mean of `ap` over classes with ground truth (NaN if there is none at all)
  ap: dict[int, float]  # AP of every class with at least one ground-truth box
  num_gt: dict[int, int]  # ground-truth boxes per evaluated class
  # Excluded from the mean: classes 0..num_classes-1 (or seen in detections) without any ground-truth box.
  classes_without_gt: list[int]
  num_images: int
  num_ignored: int = 0  # detections that matched an ignored box (difficult, crowd): neither TP nor FP


class DetectionAccumulator:
  """Collects per-class (confidence, TP) pairs image by image; `result()` computes AP per class and mAP.

  Matching happens per image when it is added, so memory is O(number of detections), not O(images x boxes).
  """

  def __init__(self, num_classes: int | None = None, *, iou_threshold: float = 0.5,
               small_box_relaxation: bool = False, matching: str = 'ilsvrc'):
    if matching not in MATCHING:
      raise InputError(f'matching must be one of {MATCHING}, got {matching!r}.')
    if not 0.0 < iou_threshold <= 1.0:
      raise InputError(f'iou_threshold must be in (0, 1], got {iou_threshold}.')
    self.num_classes, self.iou_threshold = num_classes, float(iou_threshold)
    self.small_box_relaxation, self.matching = small_box_relaxation, matching
    self._scores: dict[int, list[np.ndarray]] = {}
    self._tps: dict[int, list[np.ndarray]] = {}
    self._num_gt: dict[int, int] = {}
    self.num_images = 0
    self.num_ignored = 0  # detections that matched an ignored box (neither TP nor FP)

  def _check_classes(self, classes: np.ndarray, name: str) -> None:
    too_big = self.num_classes is not None and classes.size and classes.max() >= self.num_classes
    if too_big or (classes.size and classes.min() < 0):
      raise InputError(f'{name} must lie in [0, {self.num_classes}), got {classes.min()}..{classes.max()}.')

  def add_image(self, det_boxes, det_scores, det_classes, gt_boxes, gt_classes, ignore_classes=(),
                ignore_boxes=(), ignore_labels=()) -> None:
    """Adds one image: detections `[D, 4]`, `[D]`, `[D]` and ground truth `[M, 4]`, `[M]` (D, M may be 0).

    `ignore_classes [K]`: the classes blacklisted in this image (module docstring); their ground truth and
    detections here are left out, as the ILSVRC DET devkit does. `ignore_boxes [J, 4]` (float64, the same
    pixels as the boxes) and `ignore_labels [J]`: the image's ignored boxes (VOC difficult, COCO iscrowd) and
    their classes: not ground truth to find, and a detection matching one is neither TP nor FP (module
    docstring). Raises InputError on non-finite input or mismatched lengths.
    """
    det_boxes, gt_boxes = box_lib.as_boxes(det_boxes, 'det_boxes'), box_lib.as_boxes(gt_boxes, 'gt_boxes')
    ignore_boxes = box_lib.as_boxes(ignore_boxes, 'ignore_boxes')
    det_scores = np.asarray(det_scores, np.float64).reshape(-1)
    det_classes = np.asarray(det_classes, np.int64).reshape(-1)
    gt_classes = np.asarray(gt_classes, np.int64).reshape(-1)
    ignore_labels = np.asarray(ignore_labels, np.int64).reshape(-1)
    if not det_boxes.shape[0] == det_scores.size == det_classes.size or gt_boxes.shape[0] != gt_classes.size:
      raise InputError('every detection needs a box, a score and a class; every ground-truth box a class.')
    if ignore_boxes.shape[0] != ignore_labels.size:
      raise InputError(f'{ignore_boxes.shape[0]} ignored boxes but {ignore_labels.size} ignored labels.')
    if not np.isfinite(det_scores).all():
      raise InputError(f'detection scores must be finite; got {det_scores[~np.isfinite(det_scores)][0]}.')
    self._check_classes(det_classes, 'detection classes')
    self._check_classes(gt_classes, 'ground-truth classes')
    self._check_classes(ignore_labels, 'ignored-box labels')
    ignore = np.asarray(ignore_classes, np.int64).reshape(-1)
    self._check_classes(ignore, 'ignored (blacklisted) classes')
    if ignore.size:
      dets, gts = ~np.isin(det_classes, ignore), ~np.isin(gt_classes, ignore)
      det_boxes, det_scores, det_classes = det_boxes[dets], det_scores[dets], det_classes[dets]
      gt_boxes, gt_classes = gt_boxes[gts], gt_classes[gts]
    all_boxes = np.concatenate([gt_boxes, ignore_boxes])
    all_classes = np.concatenate([gt_classes, ignore_labels])
    is_ignored = np.arange(len(all_classes)) >= len(gt_classes)
    for c in np.union1d(det_classes, gt_classes):
      dets, gts = det_classes == c, all_classes == c
      thr = iou_thresholds(all_boxes[gts], self.iou_threshold, self.small_box_relaxation)
      is_tp, skip = match_image_class(det_boxes[dets], det_scores[dets], all_boxes[gts], thr, self.matching,
                                      is_ignored[gts])
      self._scores.setdefault(int(c), []).append(det_scores[dets][~skip])
      self._tps.setdefault(int(c), []).append(is_tp[~skip])
      self._num_gt[int(c)] = self._num_gt.get(int(c), 0) + int((gts & ~is_ignored).sum())
      self.num_ignored += int(skip.sum())
    self.num_images += 1

  def result(self) -> DetectionResult:
    classes = set(self._num_gt) | set(range(self.num_classes or 0))
    ap, num_gt, without = {}, {}, []
    for c in sorted(classes):
      n = self._num_gt.get(c, 0)
      if n == 0:
        without.append(c)
        continue
      ap[c] = average_precision(np.concatenate(self._scores[c]), np.concatenate(self._tps[c]), n)
      num_gt[c] = n
    mean_ap = float(np.mean(list(ap.values()))) if ap else float('nan')
    return DetectionResult(mean_ap, ap, num_gt, without, self.num_images, self.num_ignored)


def mean_average_precision(detections, ground_truth, num_classes: int | None = None, *,
                           blacklist: Iterable[tuple[int, int]] | None = None, **options) -> DetectionResult:
  """mAP over images given as sequences of per-image tuples.

  Args:
    detections: `detections[i] = (boxes [D, 4], scores [D], classes [D])`.
    ground_truth: `ground_truth[i] = (boxes [M, 4], classes [M])`, or `(boxes, classes, ignore_boxes [J, 4],
      ignore_labels [J])` with the image's ignored boxes (VOC difficult, COCO iscrowd; module docstring).
    num_classes: if given, every class in [0, num_classes) without ground truth is listed as excluded.
    blacklist: `(i, class)` pairs: in image `i` (its position in the sequences), the ground truth and the
      detections of `class` are ignored (module docstring; the ILSVRC DET validation blacklist).
    **options: `iou_threshold`, `small_box_relaxation`, `matching`, as for `DetectionAccumulator`.
  """
  if len(detections) != len(ground_truth):
    raise InputError(f'{len(detections)} images of detections but {len(ground_truth)} of ground truth.')
  ignored: dict[int, list[int]] = {}
  for image, cls in blacklist or ():
    if not 0 <= int(image) < len(ground_truth):
      raise InputError(f'blacklist names image {image}, but there are {len(ground_truth)} images.')
    ignored.setdefault(int(image), []).append(int(cls))
  acc = DetectionAccumulator(num_classes, **options)
  for i, ((boxes, scores, classes), gt) in enumerate(zip(detections, ground_truth)):
    if len(gt) not in (2, 4):
      raise InputError(f'ground truth of image {i} must be (boxes, classes[, ignore_boxes, ignore_labels]).')
    ignore_boxes, ignore_labels = gt[2:] if len(gt) == 4 else ((), ())
    acc.add_image(boxes, scores, classes, gt[0], gt[1], ignore_classes=ignored.get(i, ()),
                  ignore_boxes=ignore_boxes, ignore_labels=ignore_labels)
  return acc.result()
