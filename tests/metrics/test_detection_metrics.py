"""Hand-worked tests of detection AP/mAP: interpolation, matching rules, small-box relaxation, exclusions."""

import numpy as np
import pytest

from overfeat_jax.errors import InputError
from overfeat_jax.metrics import detection


def test_average_precision_by_hand():
  # 3 gt; ranked TP, FP, TP. Recall 1/3, 1/3, 2/3; precision 1, 1/2, 2/3. Interpolated (max to the right):
  # 1, 2/3, 2/3. Area: 1/3 * 1 + 1/3 * 2/3 + (last third: precision 0) = 5/9.
  assert detection.average_precision([0.9, 0.8, 0.7], [True, False, True], 3) == pytest.approx(5 / 9)
  # The input order does not matter, only the scores.
  assert detection.average_precision([0.7, 0.9, 0.8], [True, True, False], 3) == pytest.approx(5 / 9)
  assert detection.average_precision([], [], 2) == 0.0
  assert detection.average_precision([0.5, 0.4], [True, True], 2) == 1.0
  with pytest.raises(InputError):
    detection.average_precision([0.5], [True], 0)


def _dataset():
  """Three images, four classes, worked by hand in `test_mean_ap_by_hand`."""
  detections = [
      # image A: class 0: exact hit (0.9), duplicate of the same gt (0.8, IoU 100/110); class 2: none.
      (np.array([[0, 0, 10, 10], [0, 0, 10, 11]]), np.array([0.9, 0.8]), np.array([0, 0])),
      # image B: class 0 (1,0,11,10) vs gt (0,0,10,10): IoU 90/110 = 0.82 -> TP (0.7); class 1: no gt at all.
      (np.array([[1, 0, 11, 10], [5, 5, 9, 9]]), np.array([0.7, 0.6]), np.array([0, 1])),
      # image C: no boxes at all.
      (np.zeros((0, 4)), np.zeros(0), np.zeros(0, int)),
  ]
  ground_truth = [
      (np.array([[0, 0, 10, 10], [20, 0, 30, 10], [0, 0, 4, 4]]), np.array([0, 0, 2])),
      (np.array([[0, 0, 10, 10]]), np.array([0])),
      (np.zeros((0, 4)), np.zeros(0, int)),
  ]
  return detections, ground_truth


def test_mean_ap_by_hand():
  # Class 0: 3 gt, ranked TP (0.9), FP (0.8, duplicate), TP (0.7) -> 5/9. Class 2: 1 gt, no detection -> 0.
  # Class 1 (detections only) and class 3 (nothing) have no gt: excluded and listed. mAP = (5/9 + 0) / 2.
  result = detection.mean_average_precision(*_dataset(), num_classes=4)
  assert result.ap == pytest.approx({0: 5 / 9, 2: 0.0})
  assert result.mean_ap == pytest.approx(5 / 18)
  assert result.classes_without_gt == [1, 3]
  assert result.num_gt == {0: 3, 2: 1}
  assert result.num_images == 3
  # Without num_classes only the classes seen are listed.
  assert detection.mean_average_precision(*_dataset()).classes_without_gt == [1]


def test_false_positive_on_an_image_without_boxes():
  # Add a 0.95 class-0 detection to the empty image C: ranking FP, TP, FP, TP -> recall 0, 1/3, 1/3, 2/3,
  # precision 0, 1/2, 1/3, 1/2 -> interpolated 1/2 at both recall steps: AP = 1/3 * 1/2 + 1/3 * 1/2 = 1/3.
  dets, gts = _dataset()
  dets[2] = (np.array([[0, 0, 10, 10]]), np.array([0.95]), np.array([0]))
  assert detection.mean_average_precision(dets, gts).ap[0] == pytest.approx(1 / 3)


def test_ilsvrc_and_voc_matching_differ_on_duplicates():
  # gt1 (0,0,10,10), gt2 (4,0,14,10). det1 (2,0,12,10), 0.9: IoU 80/120 with both -> first (gt1), TP.
  # det2 (1,0,11,10), 0.8: IoU 90/110 = 0.82 with gt1 (taken), 70/130 = 0.54 with gt2.
  # VOC: best gt is gt1, already matched -> FP; AP = 1/2. ILSVRC: best FREE gt over threshold: gt2, TP; AP 1.
  dets = [(np.array([[2, 0, 12, 10], [1, 0, 11, 10]]), np.array([0.9, 0.8]), np.array([0, 0]))]
  gts = [(np.array([[0, 0, 10, 10], [4, 0, 14, 10]]), np.array([0, 0]))]
  assert detection.mean_average_precision(dets, gts, matching='voc').mean_ap == pytest.approx(0.5)
  assert detection.mean_average_precision(dets, gts, matching='ilsvrc').mean_ap == pytest.approx(1.0)


def test_small_box_relaxation():
  # gt 4 x 4: relaxed threshold min(0.5, 16 / (14 * 14)) = 0.0816. det (0,0,8,8): IoU 16/64 = 0.25.
  dets = [(np.array([[0, 0, 8, 8]]), np.array([1.0]), np.array([0]))]
  gts = [(np.array([[0, 0, 4, 4]]), np.array([0]))]
  np.testing.assert_allclose(detection.iou_thresholds(gts[0][0].astype(float), 0.5, True), [16 / 196])
  assert detection.mean_average_precision(dets, gts).mean_ap == 0.0
  assert detection.mean_average_precision(dets, gts, small_box_relaxation=True).mean_ap == 1.0
  # A big gt keeps 0.5: 100 x 100 -> 10000 / 12100 = 0.83 > 0.5.
  np.testing.assert_allclose(detection.iou_thresholds(np.array([[0, 0, 100, 100.0]]), 0.5, True), [0.5])


def test_zero_area_boxes_never_match_but_count():
  # A zero-area gt (relaxed threshold 0) and an identical zero-area detection: intersection 0 -> FP; AP 0, and
  # the class still enters the mean together with a perfect class 1 -> mAP 0.5.
  dets = [(np.array([[5, 5, 5, 5], [0, 0, 2, 2]]), np.array([1.0, 1.0]), np.array([0, 1]))]
  gts = [(np.array([[5, 5, 5, 5], [0, 0, 2, 2]]), np.array([0, 1]))]
  result = detection.mean_average_precision(dets, gts, small_box_relaxation=True)
  assert result.ap == {0: 0.0, 1: 1.0} and result.mean_ap == 0.5


def test_no_ground_truth_at_all_gives_nan_mean_and_lists_classes():
  dets, gts = [(np.array([[0, 0, 1, 1]]), [0.5], [2])], [(np.zeros((0, 4)), [])]
  result = detection.mean_average_precision(dets, gts, 3)
  assert np.isnan(result.mean_ap) and result.ap == {} and result.classes_without_gt == [0, 1, 2]


@pytest.mark.parametrize('kwargs', [{'matching': 'coco'}, {'iou_threshold': 0.0}])
def test_bad_options_raise(kwargs):
  with pytest.raises(InputError):
    detection.DetectionAccumulator(3, **kwargs)


def test_bad_records_raise():
  acc = detection.DetectionAccumulator(2)
  with pytest.raises(InputError):
    acc.add_image(np.zeros((1, 4)), [0.5], [2], np.zeros((0, 4)), [])  # class out of range
  with pytest.raises(InputError):
    acc.add_image(np.zeros((1, 4)), [np.nan], [0], np.zeros((0, 4)), [])
  with pytest.raises(InputError):
    acc.add_image(np.zeros((2, 4)), [0.5], [0], np.zeros((0, 4)), [])


def _blacklist_case():
  """Issue 15's worked case: class 0 only. Image 0 (the issue's image 1) has ground truth (1,1,50,50) and a
  missed detection at 0.9; image 1 (its image 2) ground truth (1,1,50,50) and an exact detection at 0.8."""
  gt = (np.array([[1, 1, 50, 50]]), np.array([0]))
  dets = [(np.array([[60, 60, 90, 90]]), np.array([0.9]), np.array([0])),
          (np.array([[1, 1, 50, 50]]), np.array([0.8]), np.array([0]))]
  return dets, [gt, gt]


def test_blacklist_reproduces_the_devkit_worked_case():
  dets, gts = _blacklist_case()
  # Without the blacklist: ranked FP (0.9), TP (0.8) of 2 gt -> recall 1/2 at precision 1/2: AP 0.25.
  assert detection.mean_average_precision(dets, gts).ap[0] == pytest.approx(0.25)
  # eval_detection.m with (image 1, class 0) blacklisted: that image's gt and detection are ignored: AP 1.0.
  result = detection.mean_average_precision(dets, gts, blacklist=[(0, 0)])
  assert result.ap[0] == 1.0 and result.num_gt == {0: 1} and result.num_images == 2


def test_blacklist_is_per_image_and_class():
  dets, gts = _blacklist_case()
  # Another class blacklisted in image 0, or class 0 in an image where the detection was right: no help.
  assert detection.mean_average_precision(dets, gts, 2, blacklist=[(0, 1)]).ap[0] == pytest.approx(0.25)
  assert detection.mean_average_precision(dets, gts, blacklist=[(1, 0)]).ap[0] == 0.0  # only the FP is left
  acc = detection.DetectionAccumulator(2)
  for (boxes, scores, classes), (gt_boxes, gt_classes), ignore in zip(dets, gts, ([0], [])):
    acc.add_image(boxes, scores, classes, gt_boxes, gt_classes, ignore_classes=ignore)
  assert acc.result().ap == {0: 1.0}
  with pytest.raises(InputError, match='blacklist names image 2'):
    detection.mean_average_precision(dets, gts, blacklist=[(2, 0)])
  with pytest.raises(InputError, match='blacklisted'):
    acc.add_image(np.zeros((0, 4)), [], [], np.zeros((0, 4)), [], ignore_classes=[5])


def _ignored_case():
  """Class 0. Image 0: ground truth (0,0,10,10) with an exact detection at 0.8; a difficult/crowd box
  (20,0,30,10) with an exact detection at 0.9 and a second one at 0.7 (IoU 90/110 = 0.82).
  Image 1: ground truth (0,0,10,10), missed; a detection at 0.6 far from everything."""
  dets = [(np.array([[20, 0, 30, 10], [0, 0, 10, 10], [21, 0, 31, 10]]), np.array([0.9, 0.8, 0.7]),
           np.array([0, 0, 0])),
          (np.array([[50, 50, 60, 60]]), np.array([0.6]), np.array([0]))]
  gts = [(np.array([[0, 0, 10, 10]]), np.array([0]), np.array([[20, 0, 30, 10]]), np.array([0])),
         (np.array([[0, 0, 10, 10]]), np.array([0]))]
  return dets, gts


@pytest.mark.parametrize('matching', detection.MATCHING)
def test_detections_on_ignored_boxes_are_neither_true_nor_false(matching):
  dets, gts = _ignored_case()
  # Ignored: both detections on the crowd box leave the ranking; left TP (0.8), FP (0.6) of 2 gt (the ignored
  # box is not one): recall 1/2 at precision 1 -> AP 1/2.
  result = detection.mean_average_precision(dets, gts, matching=matching)
  assert result.ap[0] == pytest.approx(0.5) and result.num_gt == {0: 2} and result.num_ignored == 2
  # The same box as plain ground truth: 3 gt, ranked TP (0.9), TP (0.8), FP (0.7, duplicate), FP (0.6):
  # recall 1/3, 2/3 at precision 1 -> AP 2/3.
  as_gt = [(np.concatenate([gts[0][0], gts[0][2]]), np.array([0, 0])), gts[1]]
  assert detection.mean_average_precision(dets, as_gt, matching=matching).ap[0] == pytest.approx(2 / 3)
  # Without it at all: FP (0.9), TP (0.8), FP (0.7), FP (0.6) of 2 gt: recall 1/2 at precision 1/2 -> AP 1/4.
  no_box = [gts[0][:2], gts[1]]
  assert detection.mean_average_precision(dets, no_box, matching=matching).ap[0] == pytest.approx(0.25)


def test_ignored_box_rule_voc_against_coco():
  # gt (0,0,10,10) and an ignored box (2,0,12,10) of class 0; one detection (1,0,11,10): IoU 90/110 = 0.82 with
  # both. VOC (VOCevaldet.m): the best overlap is the first of the tied boxes, the gt -> TP; after that gt is
  # taken, a second identical detection's best box is still the gt -> a duplicate, FP. COCO/ILSVRC order: the
  # second detection finds no free gt, but reaches the ignored box -> ignored.
  box = [1, 0, 11, 10]
  dets = [(np.array([box, box]), np.array([0.9, 0.8]), np.array([0, 0]))]
  gts = [(np.array([[0, 0, 10, 10]]), np.array([0]), np.array([[2, 0, 12, 10]]), np.array([0]))]
  voc = detection.mean_average_precision(dets, gts, matching='voc')
  assert voc.ap[0] == 1.0 and voc.num_ignored == 0  # TP then FP: the FP comes after full recall
  coco = detection.mean_average_precision(dets, gts, matching='ilsvrc')
  assert coco.ap[0] == 1.0 and coco.num_ignored == 1
  # With the ignored box the closer one (IoU 1 against 0.82), VOC ignores the detection: AP 0, nothing found.
  dets = [(np.array([[2, 0, 12, 10]]), np.array([0.9]), np.array([0]))]
  voc = detection.mean_average_precision(dets, gts, matching='voc')
  assert voc.ap[0] == 0.0 and voc.num_ignored == 1
  # ... while COCO takes the free gt first (IoU 80/120 = 0.67 >= 0.5): TP, AP 1.
  assert detection.mean_average_precision(dets, gts, matching='ilsvrc').ap[0] == 1.0


def test_ignored_boxes_are_per_class_and_checked():
  # An ignored box of class 1 does not absorb a class-0 detection on it: FP, AP 0 for class 0.
  dets = [(np.array([[20, 0, 30, 10]]), np.array([0.9]), np.array([0]))]
  gts = [(np.array([[0, 0, 10, 10]]), np.array([0]), np.array([[20, 0, 30, 10]]), np.array([1]))]
  result = detection.mean_average_precision(dets, gts, 2)
  assert result.ap == {0: 0.0} and result.classes_without_gt == [1] and result.num_ignored == 0
  acc = detection.DetectionAccumulator(2)
  with pytest.raises(InputError, match='2 ignored boxes but 1 ignored labels'):
    acc.add_image(np.zeros((0, 4)), [], [], np.zeros((0, 4)), [], ignore_boxes=np.zeros((2, 4)),
                  ignore_labels=[0])
  with pytest.raises(InputError, match='ignored-box labels'):
    acc.add_image(np.zeros((0, 4)), [], [], np.zeros((0, 4)), [], ignore_boxes=np.zeros((1, 4)),
                  ignore_labels=[2])
  with pytest.raises(InputError, match='ignore_boxes contains NaN'):
    acc.add_image(np.zeros((0, 4)), [], [], np.zeros((0, 4)), [], ignore_boxes=[[0, 0, np.nan, 1]],
                  ignore_labels=[0])
  with pytest.raises(InputError, match='ground truth of image 0'):
    detection.mean_average_precision(dets, [gts[0][:3]])
