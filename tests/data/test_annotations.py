"""Annotation readers and box repair, checked against hand-worked numbers in the project's box convention."""

import io

import imagenet_fixtures as fx
import numpy as np
import pytest
import scipy.io
import tensorflow_datasets as tfds

from overfeat_jax.data import annotations as ann
from overfeat_jax.errors import InputError

INDEX = {fx.TENCH: 0, fx.GOLDFISH: 1, fx.SHARK: 2}


def _raw(objects, size=(40, 30)):
  return ann.RawAnnotation('x', size[0] if size else None, size[1] if size else None,
                           tuple(ann.RawObject(*o) for o in objects))


def test_parse_voc_xml_as_imagenet_writes_it():
  objects = [(fx.TENCH, 11, 6, 20, 25), (fx.SHARK, 1, 2, 3, 4)]
  parsed = ann.parse_voc_xml(fx.xml('n01440764_1', fx.TENCH, objects))
  assert (parsed.filename, parsed.width, parsed.height) == ('n01440764_1', 40, 30)
  assert parsed.objects == (ann.RawObject(fx.TENCH, 11, 6, 20, 25), ann.RawObject(fx.SHARK, 1, 2, 3, 4))


def test_xml_without_size_or_coordinates():
  text = (b'<annotation><filename>a</filename><object><name>n01440764</name><bndbox><xmin>1</xmin>'
          b'<ymin>2</ymin><xmax>3</xmax></bndbox></object></annotation>')
  parsed = ann.parse_voc_xml(text)
  assert parsed.width is None and parsed.height is None and parsed.objects == ()


@pytest.mark.parametrize('text', [b'<annotation><size>', b'<html></html>', b''])
def test_malformed_xml_raises_input_error(text):
  with pytest.raises(InputError):
    ann.parse_voc_xml(text, name='bad.xml')


def test_box_convention_inclusive_one_based_to_continuous():
  # XML columns 11..20 (1-based, inclusive) are 0-based pixels 10..19: x1 = 10, x2 = 20, width 20 - 11 + 1.
  boxes, labels, reasons = ann.to_boxes(_raw([(fx.TENCH, 11, 6, 20, 25)]), (40, 30), INDEX)
  np.testing.assert_array_equal(boxes, [[10, 5, 20, 25]])
  assert boxes.dtype == np.float32 and labels.tolist() == [0] and labels.dtype == np.int64 and reasons == []
  assert (boxes[0, 2] - boxes[0, 0]) * (boxes[0, 3] - boxes[0, 1]) == (20 - 11 + 1) * (25 - 6 + 1)


def test_whole_image_box_stays_whole_image():
  boxes, _, reasons = ann.to_boxes(_raw([(fx.SHARK, 1, 1, 40, 30)]), (40, 30), INDEX)
  np.testing.assert_array_equal(boxes, [[0, 0, 40, 30]])
  assert reasons == []


def test_box_past_border_is_clipped():
  boxes, _, reasons = ann.to_boxes(_raw([(fx.GOLDFISH, 30, 0, 45, 12)]), (40, 30), INDEX)
  np.testing.assert_array_equal(boxes, [[29, 0, 40, 12]])  # y1 = 0 - 1 = -1 -> 0, x2 = 45 -> 40
  assert reasons == ['box_clipped']


def test_inverted_box_is_swapped():
  boxes, _, reasons = ann.to_boxes(_raw([(fx.GOLDFISH, 20, 25, 5, 10)]), (40, 30), INDEX)
  np.testing.assert_array_equal(boxes, [[4, 9, 20, 25]])
  assert reasons == ['box_inverted_swapped']


def test_a_zero_width_box_in_inclusive_pixels_is_dropped_not_swapped():
  """xmin=11, xmax=10 is 0 pixels wide in the devkit's inclusive convention: it became a 2-pixel box
  [9, 11] as 'inverted' (field case)."""
  for box in [(fx.GOLDFISH, 11, 5, 10, 20), (fx.GOLDFISH, 5, 11, 20, 10)]:
    boxes, _, reasons = ann.to_boxes(_raw([box]), (40, 30), INDEX)
    assert boxes.shape == (0, 4) and reasons == ['box_empty_dropped'], box


def test_zero_area_after_clipping_is_dropped():
  boxes, labels, reasons = ann.to_boxes(_raw([(fx.TENCH, 42, 3, 50, 9)]), (40, 30), INDEX)
  assert boxes.shape == (0, 4) and labels.shape == (0,)
  assert reasons == ['box_clipped', 'box_empty_dropped']


def test_unknown_synset_box_is_dropped():
  raw = _raw([('n99999999', 1, 1, 5, 5), (fx.SHARK, 1, 1, 5, 5)])
  boxes, labels, reasons = ann.to_boxes(raw, (40, 30), INDEX)
  np.testing.assert_array_equal(boxes, [[0, 0, 5, 5]])
  assert labels.tolist() == [2] and reasons == ['box_unknown_synset_dropped']


def test_missing_size_uses_image_and_wrong_size_rescales():
  _, _, reasons = ann.to_boxes(_raw([(fx.TENCH, 1, 1, 5, 5)], size=None), (40, 30), INDEX)
  assert reasons == ['size_missing_used_image']
  # The XML says 80x60 for a 40x30 image: every coordinate halves; (21-1, 11-1, 60, 50) / 2.
  boxes, _, reasons = ann.to_boxes(_raw([(fx.SHARK, 21, 11, 60, 50)], size=(80, 60)), (40, 30), INDEX)
  np.testing.assert_array_equal(boxes, [[10, 5, 30, 25]])
  assert reasons == ['size_mismatch_rescaled']


def test_prediction_string_and_solution_csv():
  text = ('ImageId,PredictionString\n'
          f'ILSVRC2012_val_00000001,{fx.GOLDFISH} 1 1 10 10 {fx.GOLDFISH} 21 11 40 30 \n'
          f'n01440764_1,{fx.TENCH} 11 6 20 25\n')
  out = ann.read_solution_csv(text.encode())
  assert out['ILSVRC2012_val_00000001'][1] == ann.RawObject(fx.GOLDFISH, 21, 11, 40, 30)
  assert out['n01440764_1'] == (ann.RawObject(fx.TENCH, 11, 6, 20, 25),)
  with pytest.raises(InputError, match='multiple of 5'):
    ann.parse_prediction_string(f'{fx.TENCH} 1 2 3')
  with pytest.raises(InputError, match='header'):
    ann.read_solution_csv(b'a,b\n')


def test_synset_mapping():
  out = ann.read_synset_mapping(f'{fx.TENCH} tench, Tinca tinca\n\n{fx.GOLDFISH} goldfish\n'.encode())
  assert out == [(fx.TENCH, 'tench, Tinca tinca'), (fx.GOLDFISH, 'goldfish')]
  with pytest.raises(InputError, match='line 1'):
    ann.read_synset_mapping(b'tench n01440764\n')


def test_devkit_meta_mat_round_trip_and_classes_are_leaves_in_id_order():
  synsets = ann.read_devkit_meta(fx.meta_mat_bytes())
  assert [(s.ilsvrc2012_id, s.wnid, s.num_children) for s in synsets] == [
      (1, fx.SHARK, 0), (2, fx.TENCH, 0), (3, fx.GOLDFISH, 0), (1001, 'n01439121', 2)]
  assert synsets[1].words == 'tench, Tinca tinca'
  classes = ann.devkit_classes(reversed(synsets))
  assert [s.wnid for s in classes] == fx.DEVKIT_ORDER


def test_devkit_meta_mat_errors():
  buffer = io.BytesIO()
  scipy.io.savemat(buffer, {'other': np.zeros(3)})
  with pytest.raises(InputError, match='synsets'):
    ann.read_devkit_meta(buffer.getvalue())
  with pytest.raises(InputError, match='meta.mat'):
    ann.read_devkit_meta(b'not a mat file at all, just bytes')


def test_val_ground_truth():
  assert ann.read_val_ground_truth(b'490\n361\n171\n') == [490, 361, 171]
  with pytest.raises(InputError):
    ann.read_val_ground_truth(b'1\nkit fox\n')


def test_devkit_to_sorted_mapping_by_hand():
  sorted_wnids = sorted(fx.DEVKIT_ORDER)  # tench 0, goldfish 1, shark 2
  p = ann.devkit_to_sorted(fx.DEVKIT_ORDER, sorted_wnids)
  assert p.tolist() == [2, 0, 1]  # devkit 1 = shark -> 2, devkit 2 = tench -> 0, devkit 3 = goldfish -> 1
  q = ann.sorted_to_devkit(fx.DEVKIT_ORDER, sorted_wnids)
  assert q.tolist() == [1, 2, 0]
  release_scores = np.array([0.7, 0.2, 0.1])  # in devkit order: shark most likely
  ours = release_scores[q]
  assert sorted_wnids[int(ours.argmax())] == fx.SHARK
  with pytest.raises(InputError, match='not in the sorted'):
    ann.devkit_to_sorted(['n00000000'], sorted_wnids)


def test_full_1000_class_permutation_against_tfds_lists():
  # tfds ships the 1000 WNIDs sorted (labels.txt) and in devkit-ID order (imagenet_resized_labels.txt).
  sorted_wnids = tfds.core.tfds_path('datasets/imagenet2012/labels.txt').read_text().split()
  devkit = tfds.core.tfds_path('image_classification/imagenet_resized_labels.txt').read_text().split()
  p = ann.devkit_to_sorted(devkit, sorted_wnids)
  assert sorted(p.tolist()) == list(range(1000))
  assert sorted_wnids[p[0]] == 'n02119789'  # ILSVRC2012_ID 1 is kit fox
  q = ann.sorted_to_devkit(devkit, sorted_wnids)
  np.testing.assert_array_equal(p[q], np.arange(1000))
