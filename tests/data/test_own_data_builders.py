"""The own-data builders (voc_folder, coco_json, image_folder) on real-looking photos with every bad case.

Each folder is built once per module; the tests check the build report's counts, hand-worked boxes, the
phone photo's resize, ignore boxes (VOC difficult, COCO iscrowd), class orders and splits, and the CLI's
one-line errors. The embedded round trip (write_folders -> both builders -> the det view's exact records) is
in test_own_data_roundtrip.py.
"""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageOps

from overfeat_jax.data import annotations
from overfeat_jax.data import build as build_lib
from overfeat_jax.data import class_names
from overfeat_jax.data import folders
from overfeat_jax.data import imagenet_cls_loc
from overfeat_jax.data import pipeline
from overfeat_jax.data import report as report_lib
from overfeat_jax.errors import InputError
from tests.data import own_data_photos as photos

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _records(data_dir, name: str) -> dict[str, dict]:
  """{image_id: record} over every split of a built own-data dataset (images decoded)."""
  out = {}
  info = json.loads(open(os.path.join(folders.dataset_dir(data_dir, name), 'dataset_info.json')).read())
  for split in (s['name'] for s in info['splits']):
    src = pipeline.open_source(name, split, data_dir=str(data_dir), decode_images=True)
    for i in range(len(src)):
      r = src[i]
      out[r['image_id'].decode()] = dict(r, split=split)
  return out


def _summed(report: dict, kind: str) -> dict[str, int]:
  total: dict[str, int] = {}
  for r in report['splits'].values():
    for k, v in r[kind].items():
      total[k] = total.get(k, 0) + v
  return total


def _check_report(builder, skipped, repaired_expected, kept):
  report = report_lib.read_report(builder.data_dir)
  assert _summed(report, 'skipped') == skipped
  repaired = _summed(report, 'repaired')
  assert {k: repaired.get(k) for k in repaired_expected} == repaired_expected
  assert sum(r['kept'] for r in report['splits'].values()) == kept
  return report


@pytest.fixture(scope='module')
def voc(tmp_path_factory):
  root = photos.make_voc(str(tmp_path_factory.mktemp('voc')))
  data_dir = tmp_path_factory.mktemp('tfds_voc')
  builder = build_lib.build('voc_folder', str(data_dir), root, name='pets', classes=f'{root}/classes.txt')
  return builder, data_dir, _records(data_dir, 'voc_folder/pets')


def test_voc_counts_every_bad_case(voc):
  _check_report(voc[0], photos.EXPECTED_VOC_SKIPPED, photos.EXPECTED_VOC_REPAIRED, photos.EXPECTED_VOC_KEPT)


def test_voc_boxes_classes_and_ignored_difficult(voc):
  builder, _, records = voc
  assert folders.class_names(builder.data_dir) == list(photos.CLASSES)
  assert sorted(records) == ['p01', 'p02', 'p03', 'p04', 'p07', 'phone']
  # Float VOC coordinates read as 1-based inclusive: x1 = xmin - 1.
  np.testing.assert_array_equal(records['p01']['boxes'], [[9.5, 19, 60, 80], [69, 29, 150, 110]])
  np.testing.assert_array_equal(records['p01']['box_labels'], [1, 2])
  # The difficult bird is kept out of the boxes, in ignore_boxes.
  np.testing.assert_array_equal(records['p02']['box_labels'], [2, 1])
  np.testing.assert_array_equal(records['p02']['ignore_boxes'], [[110, 60, 150, 100]])
  np.testing.assert_array_equal(records['p02']['ignore_labels'], [0])
  # Found through <filename>, no <size>, right edge clipped to the 160-px image.
  np.testing.assert_array_equal(records['p03']['boxes'], [[20, 30, 70, 90], [100, 20, 160, 100]])
  # The box outside the image and the horse (not in classes.txt) are gone.
  np.testing.assert_array_equal(records['p04']['box_labels'], [2, 1])
  assert records['p04']['image'].shape == (photos.H, photos.W, 3)


def test_voc_phone_photo_is_stored_at_256_with_scaled_boxes(voc):
  record = voc[2]['phone']
  assert record['image'].shape == (256, 341, 3)  # 4032x3024 -> smaller side 256 (the default)
  expected = np.array([o[1:] for o in photos.PHONE[1]]) * [341 / 4032, 256 / 3024, 341 / 4032, 256 / 3024]
  np.testing.assert_allclose(record['boxes'], expected, rtol=1e-5)


def test_voc_hash_split_is_the_documented_rule(voc):
  for image_id, record in voc[2].items():
    assert record['split'] == folders.hash_split(image_id)


def test_voc_sorted_classes_without_a_classes_file(tmp_path):
  root = photos.make_voc(str(tmp_path / 'voc'))
  builder = build_lib.build('voc_folder', str(tmp_path / 'd'), root, name='sorted', smaller_side=0)
  assert folders.class_names(builder.data_dir) == ['bird', 'cat', 'dog', 'horse']  # horse is a class now
  assert 'box_unknown_synset_dropped' not in _summed(report_lib.read_report(builder.data_dir), 'repaired')


def test_voc_image_sets_give_the_splits(tmp_path):
  root = photos.make_voc(str(tmp_path / 'voc'), image_sets=True)
  builder = build_lib.build('voc_folder', str(tmp_path / 'd'), root, name='sets',
                            classes=f'{root}/classes.txt')
  report = report_lib.read_report(builder.data_dir)['splits']
  assert {s: r['kept'] for s, r in report.items()} == {'train': 4, 'validation': 1, 'unassigned': 0}
  assert report['unassigned']['skipped'] == {'annotation_missing': 1, 'annotation_unreadable': 1,
                                             'image_missing': 1, 'not_in_image_sets': 1}
  assert report['train']['skipped'] == {'image_missing': 1}
  assert report['validation']['skipped'] == {'duplicate_file_name': 1}
  assert sorted(builder.info.splits) == ['train', 'validation']


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
  root = photos.make_coco(str(tmp_path_factory.mktemp('coco')))
  data_dir = tmp_path_factory.mktemp('tfds_coco')
  builder = build_lib.build('coco_json', str(data_dir), root, name='pets')
  return builder, data_dir, _records(data_dir, 'coco_json/pets')


def test_coco_counts_every_bad_case(coco):
  _check_report(coco[0], photos.EXPECTED_COCO_SKIPPED, photos.EXPECTED_COCO_REPAIRED,
                photos.EXPECTED_COCO_KEPT)


def test_coco_dense_categories_crowd_and_boxes(coco):
  builder, _, records = coco
  meta = builder.info.metadata
  assert meta['category_ids'] == [3, 7, 12] and meta['class_names'] == ['cat', 'dog', 'bird']
  assert meta['unused_category_ids'] == [99]
  # [x, y, w, h] -> (x, y, x + w, y + h); cat (id 3) is label 0, dog (7) 1, bird (12) 2.
  np.testing.assert_array_equal(records['p01']['boxes'], [[9.5, 19, 60, 80], [69, 29, 150, 110]])
  np.testing.assert_array_equal(records['p01']['box_labels'], [0, 1])
  np.testing.assert_array_equal(records['p02']['box_labels'], [1, 0])  # the crowd of birds is not a box ...
  np.testing.assert_array_equal(records['p02']['ignore_boxes'], [[110, 60, 150, 100]])  # ... but ignored
  np.testing.assert_array_equal(records['p02']['ignore_labels'], [2])
  np.testing.assert_array_equal(records['p03']['boxes'], [[20, 30, 70, 90], [100, 20, 160, 100],
                                                          [150, 10, 160, 30]])
  np.testing.assert_array_equal(records['p04']['box_labels'], [1, 0])
  assert records['phone']['image'].shape == (256, 341, 3)


def test_coco_split_from_file_names(tmp_path):
  root = photos.make_coco(str(tmp_path / 'coco'), split_files=True)
  builder = build_lib.build('coco_json', str(tmp_path / 'd'), root, name='split', smaller_side=0)
  assert {s: i.num_examples for s, i in builder.info.splits.items()} == {'train': 4, 'validation': 1}


def test_image_folder_labels_and_counts(tmp_path):
  root = photos.make_image_folder(str(tmp_path / 'classes'))
  builder = build_lib.build('image_folder', str(tmp_path / 'd'), root, name='pets')
  report = _check_report(builder, photos.EXPECTED_FOLDER_SKIPPED, {}, photos.EXPECTED_FOLDER_KEPT)
  assert _summed(report, 'repaired') == {}  # a photo without boxes is what class folders are
  notes = {n for r in report['splits'].values() for n in r['notes']}  # not 'from the annotations' (field case)
  assert f'classes: {len(photos.CLASSES)} from the class folder names (sorted)' in notes
  records = _records(tmp_path / 'd', 'image_folder/pets')
  assert builder.info.features['label'].names == list(photos.CLASSES)
  # predict prints and export writes these names (they printed indices and wrote null: field case)
  assert class_names.dataset_class_names('image_folder/pets', str(tmp_path / 'd'), 3) == list(photos.CLASSES)
  assert class_names.dataset_class_names('image_folder/pets', str(tmp_path / 'nowhere'), 3) is None
  assert {k: int(r['label']) for k, r in records.items() if k.endswith('_1')} == {
      'bird/bird_1': 0, 'cat/cat_1': 1, 'dog/dog_1': 2}
  deep = records['cat/nested/cat_deep']
  assert int(deep['label']) == 1 and deep['boxes'].shape == (0, 4)
  # cat/cat_0.jpg and dog/cat_0.jpg are two photos: both kept (a stem-only id dropped the second: field case)
  assert (int(records['cat/cat_0']['label']), int(records['dog/cat_0']['label'])) == (1, 2)
  # The classification stage's pipeline reads them: labels in the batch, no boxes.
  source = pipeline.open_source('image_folder/pets', 'train', data_dir=str(tmp_path / 'd'))
  batch = next(pipeline.train_iterator(source, global_batch_size=2, crop_size=64, resize_smaller=None,
                                       max_boxes=2, seed=0, shard_index=0, shard_count=1))
  assert batch['image'].shape == (2, 64, 64, 3) and set(batch['label']) <= {0, 1, 2}
  assert (batch['box_labels'] == -1).all()


def test_bad_folders_are_input_errors(tmp_path):
  (tmp_path / 'empty_voc' / 'stuff').mkdir(parents=True)
  with pytest.raises(InputError, match='no VOC layout'):
    build_lib.build('voc_folder', str(tmp_path / 'd'), str(tmp_path / 'empty_voc'), name='x')
  (tmp_path / 'no_json' / 'images').mkdir(parents=True)
  with pytest.raises(InputError, match='no COCO instances file'):
    build_lib.build('coco_json', str(tmp_path / 'd'), str(tmp_path / 'no_json'), name='x')
  with pytest.raises(InputError, match='dataset name'):
    build_lib.build('voc_folder', str(tmp_path / 'd'), str(tmp_path / 'empty_voc'), name='My Photos')
  with pytest.raises(InputError, match='build it first'):
    folders.dataset_dir(str(tmp_path / 'd'), 'voc_folder/never_built')


def test_what_a_build_finds_nothing_in_says_so_and_leaves_no_folder(tmp_path):
  """Field cases: a folder of empty class folders said 'no image with an annotation ... (see the build report
  counts above)' with no counts above and left empty `image_folder/<name>` and `downloads/` folders; a COCO
  file without categories said 'no class found (no annotated object or class folder)'."""
  (tmp_path / 'pets' / 'cat').mkdir(parents=True)
  (tmp_path / 'pets' / 'cat' / 'notes.txt').write_text('not a photo')
  data_dir = tmp_path / 'tfds'
  with pytest.raises(InputError, match=r'no photo in a class folder was found \(skipped: not_an_image_file 1\)'):
    build_lib.build('image_folder', str(data_dir), str(tmp_path / 'pets'), name='pets')
  assert not data_dir.exists()
  (data_dir / 'kept').mkdir(parents=True)  # a data_dir already in use keeps what it holds
  with pytest.raises(InputError):
    build_lib.build('image_folder', str(data_dir), str(tmp_path / 'pets'), name='pets')
  assert sorted(p.name for p in data_dir.iterdir()) == ['kept']

  coco = tmp_path / 'coco'
  photos._write(f'{coco}/images/a.jpg', photos.jpeg(photos.photo(0, [])))
  instances = {'images': [{'id': 1, 'file_name': 'a.jpg'}, {'id': 2, 'file_name': 'gone.jpg'}],
               'annotations': [{'image_id': 1, 'category_id': 1, 'bbox': [20, 30, 50, 60]},
                               {'image_id': 2, 'category_id': 1, 'bbox': [20, 30, 50, 60]}]}
  photos._write(f'{coco}/instances.json', json.dumps(instances))
  with pytest.raises(InputError, match=r'no class found: no annotation of instances.json has a category_id '
                                       r'listed in its "categories" \(0 listed\)'):
    build_lib.build('coco_json', str(data_dir), str(coco), name='nocats')
  # With categories: the missing photo's annotation goes with it (image_missing), not 'of an unknown image'.
  photos._write(f'{coco}/instances.json', json.dumps(dict(instances, categories=[{'id': 1, 'name': 'cat'}])))
  builder = build_lib.build('coco_json', str(data_dir), str(coco), name='gone')
  report = report_lib.read_report(builder.data_dir)
  assert _summed(report, 'skipped') == {'image_missing': 1}
  notes = [n for r in report['splits'].values() for n in r['notes']]
  assert 'classes: 1 from the categories the annotations use (by id)' in notes


def test_a_changed_folder_is_not_silently_served_from_its_old_build(tmp_path):
  """Field case: photos added to a folder and `build_dataset` run again under the same name printed the old
  build's summary, and training read the old records. Now: the same files (written again) reuse the build;
  a changed folder is one line naming what changed unless --rebuild, which keeps the old records until the new
  ones are complete."""
  root, data_dir = photos.make_image_folder(str(tmp_path / 'pets')), str(tmp_path / 'd')
  build = lambda **kw: build_lib.build('image_folder', data_dir, kw.pop('root', root), name='pets', **kw)
  kept = lambda builder: builder.info.splits.total_num_examples
  first = build()
  assert kept(first) == photos.EXPECTED_FOLDER_KEPT
  photos.make_image_folder(root)  # the same files written again (new modification times): reused
  assert kept(build()) == photos.EXPECTED_FOLDER_KEPT

  photos._write(f'{root}/cat/new.jpg', photos.jpeg(photos.photo(60, [])))
  with pytest.raises(InputError, match=r'image_folder/pets/1.0.0 was built from .*pets when it held 15 files; it '
                                       r"holds 16 now: run again with --rebuild"):
    build()
  assert kept(build(rebuild=True)) == photos.EXPECTED_FOLDER_KEPT + 1
  photos._write(f'{root}/cat/notes.txt', 'taken on HOLIDAY')  # an edit that keeps the size
  with pytest.raises(InputError, match="it holds 16 now, some of them changed"):
    build()
  other = photos.make_image_folder(str(tmp_path / 'other' / 'pets'))
  with pytest.raises(InputError, match=f'was built from {root}, not {other}'):
    build(root=other)
  assert kept(build(rebuild=True)) == photos.EXPECTED_FOLDER_KEPT + 1  # --rebuild: anew in any case
  # The options are inputs too: another --smaller_side or class list was silently served the old records.
  with pytest.raises(InputError, match='was built with --smaller_side=256, not 0'):
    build(smaller_side=0)
  classes = tmp_path / 'classes.txt'
  classes.write_text('dog\ncat\nbird\n')
  with pytest.raises(InputError, match=r"was built with the class list None, not \['dog', 'cat', 'bird'\]"):
    build(classes=str(classes))
  assert build(rebuild=True, classes=str(classes)).info.features['label'].names == ['dog', 'cat', 'bird']

  # A rebuild that fails keeps the old records; one killed mid-way is recovered by the next build.
  version_dir = os.fspath(first.data_dir)
  empty = tmp_path / 'empty' / 'pets'
  (empty / 'cat').mkdir(parents=True)
  (empty / 'cat' / 'a.txt').write_text('no photo')
  with pytest.raises(InputError, match='no photo in a class folder'):
    build(root=str(empty), rebuild=True)
  assert sorted(os.listdir(os.path.dirname(version_dir))) == ['1.0.0']
  os.rename(version_dir, version_dir + '.replaced')  # as a kill -9 after the move leaves it
  assert kept(build(classes=str(classes))) == photos.EXPECTED_FOLDER_KEPT + 1  # the old records are back
  assert sorted(os.listdir(os.path.dirname(version_dir))) == ['1.0.0']


def _cli(*args):
  env = dict(os.environ, PYTHONPATH=REPO)
  return subprocess.run([sys.executable, '-m', 'overfeat_jax.build_dataset', *args], capture_output=True,
                        text=True, cwd=REPO, env=env, timeout=120)


def test_cli_builds_a_voc_folder_and_a_bad_one_is_one_line_exit_2(tmp_path):
  root = photos.make_voc(str(tmp_path / 'My Photos'))
  ok = _cli('--dataset=voc_folder', f'--manual_dir={root}', f'--data_dir={tmp_path}/d', '--smaller_side=0')
  assert ok.returncode == 0, ok.stderr[-2000:]
  assert 'voc_folder/my_photos' in ok.stdout and 'skipped  image_missing: 1' in ok.stdout
  bad = _cli('--dataset=coco_json', f'--manual_dir={root}', f'--data_dir={tmp_path}/d')
  assert bad.returncode == 2
  lines = [line for line in bad.stderr.splitlines() if 'error' in line]
  assert len(lines) == 1 and 'no COCO instances file' in lines[0] and 'Traceback' not in bad.stderr


def test_field_quirks_are_counted_never_a_crash(tmp_path):
  """What labelling tools and hand edits leave that the folders above do not: an object without a name, without
  `<bndbox>`, with a non-numeric, 'nan' or '1e400' coordinate; a COCO image without an id, an annotation that
  is not an object or names a list as its image, a NaN bbox (Python's json reads it), a category-less box."""
  voc = tmp_path / 'voc'
  objects = [('', 10, 10, 50, 50), ('cat', 'abc', 1, 9, 9), ('cat', 'nan', 1, 9, 9), ('cat', 1, 1, '1e400', 9),
             ('cat', 20, 30, 70, 90)]
  photos._write(f'{voc}/a.jpg', photos.jpeg(photos.photo(0, [])))
  photos._write(f'{voc}/a.xml', photos.voc_xml('a', objects).replace(
      '</annotation>', '<object><name>dog</name></object></annotation>'))
  builder = build_lib.build('voc_folder', str(tmp_path / 'd'), str(voc), name='quirks')
  report = report_lib.read_report(builder.data_dir)
  assert _summed(report, 'repaired') == {'box_malformed_dropped': 4, 'box_unknown_synset_dropped': 1}
  assert folders.class_names(builder.data_dir) == ['cat']  # no class named ''
  (record,) = _records(tmp_path / 'd', 'voc_folder/quirks').values()
  np.testing.assert_array_equal(record['boxes'], [[19, 29, 70, 90]])

  coco = tmp_path / 'coco'
  photos._write(f'{coco}/images/a.jpg', photos.jpeg(photos.photo(0, [])))
  images = [{'id': 1, 'file_name': 'a.jpg', 'width': photos.W, 'height': photos.H}, {'file_name': 'b.jpg'},
            {'id': [2], 'file_name': 'c.jpg'}]
  anns = [{'image_id': 1, 'category_id': 1, 'bbox': [20, 30, 50, 60]},
          {'image_id': 1, 'category_id': 1, 'bbox': [float('nan'), 1, 2, 3]},
          {'image_id': 1, 'bbox': [1, 1, 5, 5]}, {'image_id': 1, 'category_id': [1], 'bbox': [1, 1, 5, 5]},
          {'image_id': [1], 'category_id': 1, 'bbox': [1, 1, 5, 5]}, 'not an annotation']
  photos._write(f'{coco}/instances.json', json.dumps({'images': images, 'annotations': anns,
                                                      'categories': [{'id': 1, 'name': 'cat'}]}))
  builder = build_lib.build('coco_json', str(tmp_path / 'd'), str(coco), name='quirks')
  report = report_lib.read_report(builder.data_dir)
  assert _summed(report, 'skipped') == {'image_without_id': 2, 'annotation_malformed': 2}
  assert _summed(report, 'repaired') == {'box_malformed_dropped': 1, 'box_unknown_synset_dropped': 2}
  (record,) = _records(tmp_path / 'd', 'coco_json/quirks').values()
  np.testing.assert_array_equal(record['boxes'], [[20, 30, 70, 90]])


def test_label_studio_paths_broken_json_and_case_twins(tmp_path):
  # Label Studio writes the server's path as file_name: found by its last part.
  coco = tmp_path / 'coco'
  photos._write(f'{coco}/images/a.jpg', photos.jpeg(photos.photo(0, [])))
  instances = {'images': [{'id': 1, 'file_name': '/data/upload/1/a.jpg', 'width': photos.W, 'height': photos.H}],
               'annotations': [{'image_id': 1, 'category_id': 1, 'bbox': [20, 30, 50, 60]},
                               {'image_id': 1, 'category_id': 2, 'bbox': [80, 30, 50, 60]}],
               'categories': [{'id': 1, 'name': 'Cat'}, {'id': 2, 'name': 'cat '}]}
  photos._write(f'{coco}/instances.json', json.dumps(instances))
  builder = build_lib.build('coco_json', str(tmp_path / 'd'), str(coco), name='studio')
  assert builder.info.splits.total_num_examples == 1
  notes = [n for r in report_lib.read_report(builder.data_dir)['splits'].values() for n in r['notes']]
  assert "class names that differ only in case or spaces: [['Cat', 'cat ']]" in notes
  # ... and in the printed summary, not only in build_report.json and the log (field case)
  assert "    note: class names that differ only in case or spaces: [['Cat', 'cat ']]" in build_lib.summary(
      builder.data_dir)
  # An instances file cut short is an error, not a split that silently goes missing.
  photos._write(f'{coco}/test/_annotations.coco.json', '{"images": [{"id": 1, "file_na')
  with pytest.raises(InputError, match='_annotations.coco.json is not valid JSON'):
    build_lib.build('coco_json', str(tmp_path / 'd'), str(coco), name='cut')


def _turned_photo(orientation: int) -> tuple[np.ndarray, bytes]:
  """A 300x200 (WxH) JPEG tagged with EXIF `orientation`, and its pixels as a viewer shows them."""
  image = Image.fromarray(photos.photo(3, [('cat', 40, 30, 200, 150)], size=(300, 200)))
  exif = Image.Exif()
  exif[0x0112] = orientation
  buffer = io.BytesIO()
  image.save(buffer, format='JPEG', quality=95, exif=exif.tobytes())
  viewed = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buffer.getvalue()))))
  return viewed, buffer.getvalue()


def test_exif_turned_phone_photo_labelled_as_viewed_is_stored_turned(tmp_path):
  """findings #8: a phone photo stored 300x200 with EXIF orientation 6, labelled on the 200x300 view (CVAT,
  labelImg): stored turned, boxes kept, counted `exif_transposed` (was: squashed, `size_mismatch_rescaled`). The
  same photo labelled on its stored frame, or turned half (orientation 3, same size), keeps the stored pixels."""
  viewed, turned = _turned_photo(6)
  _, half = _turned_photo(3)
  box = ('cat', 10, 10, 190, 290)  # in the 200x300 view: outside the stored 300x200 frame
  voc = tmp_path / 'voc'
  stored_box = ('cat', 10, 10, 290, 190)
  for stem, data, size, obj in (('view', turned, (200, 300), box), ('stored', turned, (300, 200), stored_box),
                                ('half', half, (300, 200), stored_box)):
    photos._write(f'{voc}/{stem}.jpg', data)
    photos._write(f'{voc}/{stem}.xml', photos.voc_xml(stem, [obj], size=size))
  coco = tmp_path / 'coco'
  photos._write(f'{coco}/images/view.jpg', turned)
  photos._write(f'{coco}/instances.json', json.dumps({
      'images': [{'id': 1, 'file_name': 'view.jpg', 'width': 200, 'height': 300}],
      'annotations': [{'image_id': 1, 'category_id': 1, 'bbox': [10, 10, 180, 280]}],
      'categories': [{'id': 1, 'name': 'cat'}]}))
  records = {}
  for builder_name, root in (('voc_folder', voc), ('coco_json', coco)):
    builder = build_lib.build(builder_name, str(tmp_path / 'd'), str(root), name='phone')
    repaired = _summed(report_lib.read_report(builder.data_dir), 'repaired')
    assert repaired == {'exif_transposed': 1}, (builder_name, repaired)
    records[builder_name] = _records(tmp_path / 'd', f'{builder_name}/phone')
    (view,) = [r for r in records[builder_name].values() if r['image_id'].decode().startswith(('view', '1'))]
    assert view['image'].shape == (300, 200, 3), builder_name
    assert np.abs(view['image'].astype(int) - viewed).mean() < 4  # the viewer's pixels (JPEG re-encoded)
    want = [[9, 9, 190, 290]] if builder_name == 'voc_folder' else [[10, 10, 190, 290]]
    np.testing.assert_allclose(view['boxes'], want)
  for stem in ('stored', 'half'):  # nothing changes: the stored pixels and the boxes as written
    assert records['voc_folder'][stem]['image'].shape == (200, 300, 3)
    np.testing.assert_allclose(records['voc_folder'][stem]['boxes'], [[9, 9, 290, 190]])
  # The ImageNet builders keep ILSVRC's rule (boxes refer to the stored pixels): the same photo is rescaled.
  report = report_lib.BuildReport('train')
  example = imagenet_cls_loc.make_example('view', turned, 'view.jpg', annotations.parse_voc_xml(
      f'{voc}/view.xml'), {'cat': 0}, None, report)
  assert dict(report.repaired) == {'size_mismatch_rescaled': 1}
  assert Image.open(io.BytesIO(example['image'])).size == (300, 200)
