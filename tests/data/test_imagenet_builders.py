"""ImageNet builders on fixtures in the real layouts: exact records and skip/repair counts, both layouts."""

import io
import os
import subprocess
import sys
import tarfile

import imagenet_fixtures as fx
import numpy as np
from PIL import Image
import pytest

from overfeat_jax.data import build as build_lib
from overfeat_jax.data import imagenet_det
from overfeat_jax.data import pipeline
from overfeat_jax.data import report as report_lib
from overfeat_jax.errors import InputError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _records(builder, split):
  source = builder.as_data_source(split=split)
  out = {}
  for i in range(len(source)):
    record = source[i]
    image_id = record['image_id']
    out[image_id.decode() if isinstance(image_id, bytes) else image_id] = record
  return out


@pytest.fixture(scope='module')
def built(tmp_path_factory):
  """{(layout, config): builder} for both CLS-LOC layouts (original) and the official one resized to 256."""
  root = tmp_path_factory.mktemp('cls_loc')
  manual = {'official': fx.write_official(str(root / 'official')),
            'kaggle': fx.write_kaggle(str(root / 'kaggle'))}
  out = {}
  for layout, config in (('official', 'original'), ('kaggle', 'original'), ('official', 'resized256')):
    data_dir = str(root / f'tfds_{layout}')
    out[layout, config] = build_lib.build('ilsvrc2012_cls_loc', data_dir, manual[layout], config)
  return out


@pytest.mark.parametrize('layout', ['official', 'kaggle'])
def test_build_report_counts_every_skip_and_repair(built, layout):
  rep = report_lib.read_report(built[layout, 'original'].data_dir)
  assert rep['layout'] == ('official archives' if layout == 'official' else 'extracted (Kaggle) layout')
  for split in ('train', 'validation'):
    r = rep['splits'][split]
    assert r['kept'] == fx.EXPECTED_CLS_LOC_KEPT[split]
    assert r['skipped'] == fx.EXPECTED_CLS_LOC_SKIPPED[split]
    assert r['repaired'] == fx.EXPECTED_CLS_LOC_REPAIRED[split]
  assert any('n01484850_2' in e for e in rep['splits']['train']['examples']['skipped:truncated'])


def test_both_layouts_give_identical_records(built):
  for split in ('train', 'validation'):
    official = _records(built['official', 'original'], split)
    kaggle = _records(built['kaggle', 'original'], split)
    assert sorted(official) == sorted(kaggle)
    for image_id, a in official.items():
      b = kaggle[image_id]
      assert sorted(a) == sorted(b) == ['box_labels', 'boxes', 'image', 'image_id', 'label']
      for key in ('image', 'boxes', 'box_labels', 'label'):
        np.testing.assert_array_equal(a[key], b[key], err_msg=f'{image_id} {key}')


def test_records_hold_hand_worked_boxes_and_labels(built):
  train = _records(built['official', 'original'], 'train')
  assert sorted(train) == ['n01440764_1', 'n01440764_2', 'n01440764_3', 'n01443537_1', 'n01443537_2',
                           'n01484850_1', 'n01484850_6']
  expected = {  # image_id: (label, boxes) in the project convention (see test_annotations for the arithmetic)
      'n01440764_1': (0, [[10, 5, 20, 25]]), 'n01440764_2': (0, []), 'n01440764_3': (0, [[0, 0, 40, 30]]),
      'n01443537_1': (1, [[29, 0, 40, 12]]), 'n01443537_2': (1, [[4, 9, 20, 25]]),
      'n01484850_1': (2, [[10, 5, 30, 25]]), 'n01484850_6': (2, [])}
  for image_id, (label, boxes) in expected.items():
    record = train[image_id]
    assert record['label'] == label
    assert record['image'].shape == (fx.H, fx.W, 3) and record['image'].dtype == np.uint8
    assert record['boxes'].dtype == np.float32 and record['box_labels'].dtype == np.int64
    np.testing.assert_array_equal(record['boxes'], np.asarray(boxes, np.float32).reshape(-1, 4))
    assert record['box_labels'].tolist() == [label] * len(boxes)
  val = _records(built['official', 'original'], 'validation')
  assert {k: int(v['label']) for k, v in val.items()} == {  # from the devkit's IDs, mapped to sorted WNIDs
      'ILSVRC2012_val_00000001': 1, 'ILSVRC2012_val_00000002': 0, 'ILSVRC2012_val_00000003': 2,
      'ILSVRC2012_val_00000004': 2}
  np.testing.assert_array_equal(val['ILSVRC2012_val_00000001']['boxes'], [[0, 0, 10, 10], [20, 10, 40, 30]])
  assert val['ILSVRC2012_val_00000003']['boxes'].shape == (0, 4)  # malformed XML: kept without boxes


def test_original_config_stores_valid_jpeg_unchanged_and_repairs_colour(built):
  train = _records(built['official', 'original'], 'train')
  spec = {stem: data for stem, _, data, _ in fx.cls_loc_spec()['train']}
  original = np.asarray(Image.open(io.BytesIO(spec['n01440764_1'])))
  np.testing.assert_array_equal(train['n01440764_1']['image'], original)  # same bytes -> same pixels
  buffer = io.BytesIO()  # PNG named .JPEG: decoded losslessly, stored re-encoded as JPEG quality 95
  Image.fromarray(fx.pattern(6)).save(buffer, format='JPEG', quality=95)
  np.testing.assert_array_equal(train['n01484850_1']['image'], np.asarray(Image.open(buffer)))
  gray = train['n01443537_2']['image'].astype(int)
  assert np.abs(gray[..., 0] - gray[..., 1]).max() <= 3  # grayscale JPEG stored as RGB
  white = train['n01484850_6']['image'][:, : fx.W // 2 - 1]
  assert white.min() >= 250  # transparent half composited on white (JPEG q95 of pure white)


def test_resized256_scales_images_and_boxes(built):
  train = _records(built['official', 'resized256'], 'train')
  sx, sy = 341 / 40, 256 / 30
  for record in train.values():
    assert min(record['image'].shape[:2]) == 256
  assert train['n01440764_1']['image'].shape == (256, 341, 3)
  np.testing.assert_allclose(train['n01440764_1']['boxes'], [[10 * sx, 5 * sy, 20 * sx, 25 * sy]], rtol=1e-6)
  np.testing.assert_allclose(train['n01440764_3']['boxes'], [[0, 0, 341, 256]], rtol=1e-6)


def test_metadata_has_words_and_devkit_order(built):
  meta = built['official', 'original'].info.metadata
  assert meta['devkit_order_wnids'] == fx.DEVKIT_ORDER
  assert meta['class_words'][fx.TENCH] == 'tench, Tinca tinca'
  info = built['official', 'original'].info
  assert info.features['label'].num_classes == 1000
  assert info.features['label'].int2str(2) == fx.SHARK
  assert 'tensorflow' not in sys.modules


def test_a_broken_inner_tar_is_counted_and_the_build_goes_on(tmp_path):
  root = fx.write_official(str(tmp_path / 'm'))
  train_tar = os.path.join(root, 'ILSVRC2012_img_train.tar')
  with tarfile.open(train_tar) as tar:
    members = [(m.name, tar.extractfile(m).read()) for m in tar]
  members.insert(1, ('n01530575.tar', b'\x00garbage, not a tar' * 40))
  with open(train_tar, 'wb') as f:
    f.write(fx._tar_bytes(members))
  builder = build_lib.build('ilsvrc2012_cls_loc', str(tmp_path / 'tfds'), root, 'original')
  r = report_lib.read_report(builder.data_dir)['splits']['train']
  assert r['skipped'].get('archive_unreadable') == 1 and r['kept'] == fx.EXPECTED_CLS_LOC_KEPT['train']


def test_missing_pieces_are_input_errors(tmp_path):
  root = fx.write_official(str(tmp_path / 'm'))
  os.remove(os.path.join(root, 'ILSVRC2012_devkit_t12.tar.gz'))
  with pytest.raises(InputError, match='devkit'):
    build_lib.build('ilsvrc2012_cls_loc', str(tmp_path / 'tfds'), root, 'original')
  junk = tmp_path / 'junk'
  junk.mkdir()
  (junk / 'readme.txt').write_text('hello')
  with pytest.raises(InputError, match='neither'):
    build_lib.build('ilsvrc2012_cls_loc', str(tmp_path / 'tfds2'), str(junk), 'original')
  with pytest.raises(InputError, match='not a directory'):
    build_lib.build('ilsvrc2014_det', str(tmp_path / 'tfds3'), str(tmp_path / 'nope'))
  with pytest.raises(InputError, match='config'):
    build_lib.build('ilsvrc2012_cls_loc', str(tmp_path / 'tfds4'), root, 'resized512')


@pytest.fixture(scope='module')
def det_built(tmp_path_factory):
  root = tmp_path_factory.mktemp('det')
  return build_lib.build('ilsvrc2014_det', str(root / 'tfds'), fx.write_det(str(root / 'det')), 'original')


def test_det_counts_and_negatives_kept(det_built):
  rep = report_lib.read_report(det_built.data_dir)
  for split in ('train', 'validation'):
    r = rep['splits'][split]
    assert (r['kept'], r['skipped'], r['repaired']) == (
        fx.EXPECTED_DET_KEPT[split], fx.EXPECTED_DET_SKIPPED[split], fx.EXPECTED_DET_REPAIRED[split])
  train = _records(det_built, 'train')
  assert sorted(train) == ['ILSVRC2014_train_00000001', 'ILSVRC2014_train_00000002',
                           'ILSVRC2014_train_00000004', 'n02672831_1']
  assert 'label' not in train['n02672831_1']
  for negative in ('ILSVRC2014_train_00000002', 'ILSVRC2014_train_00000004'):
    assert train[negative]['boxes'].shape == (0, 4) and train[negative]['box_labels'].shape == (0,)
  np.testing.assert_array_equal(train['n02672831_1']['boxes'], [[2, 3, 20, 25]])
  assert train['n02672831_1']['box_labels'].tolist() == [1]  # sorted WNIDs: ant 0, accordion 1, airplane 2
  np.testing.assert_array_equal(train['ILSVRC2014_train_00000001']['boxes'],
                                [[0, 0, 40, 15], [29, 19, 40, 30]])
  assert train['ILSVRC2014_train_00000001']['box_labels'].tolist() == [2, 0]
  val = _records(det_built, 'validation')
  assert val['ILSVRC2013_val_00000002']['boxes'].shape == (0, 4)
  assert imagenet_det.det_classes(os.fspath(det_built.data_dir)) == [
      (fx.ANT, 'ant'), (fx.ACCORDION, 'accordion'), (fx.AIRPLANE, 'airplane')]


def test_det_validation_blacklist_is_recorded_per_record(det_built):
  """The devkit's (val image 1, ant) pair lands in that record's `ignore_classes`; bad lines are counted (see
  EXPECTED_DET_SKIPPED) and the pair count is noted in the report."""
  val = _records(det_built, 'validation')
  assert val['ILSVRC2013_val_00000001']['ignore_classes'].tolist() == [0]  # ant, once although listed twice
  assert val['ILSVRC2013_val_00000002']['ignore_classes'].tolist() == []
  assert all(r['ignore_classes'].size == 0 for r in _records(det_built, 'train').values())
  assert det_built.info.metadata['blacklist_source'].endswith('ILSVRC2014_det_validation_blacklist.txt')
  notes = report_lib.read_report(det_built.data_dir)['splits']['validation']['notes']
  assert any('validation blacklist: 1 (image, class) pairs' in n for n in notes)
  # The evaluation batches carry it (padded with -1), for the detection evaluation (tasks.detection).
  batch = next(pipeline.eval_iterator(det_built.as_data_source(split='validation'), batch_size=2, view='resize',
                                      size=64, max_boxes=3, shard_index=0, shard_count=1))
  assert sorted(batch['ignore_classes'].tolist()) == [[-1, -1, -1], [0, -1, -1]]


def test_det_blacklist_reader_and_where_it_is_found(tmp_path):
  (tmp_path / 'ILSVRC' / 'Data' / 'DET').mkdir(parents=True)
  layout = imagenet_det.DetLayout(str(tmp_path))
  assert layout.blacklist_file() is None
  devkit = tmp_path / 'ILSVRC2014_devkit' / 'data'  # the devkit tarball extracted in manual_dir
  devkit.mkdir(parents=True)
  path = devkit / 'ILSVRC2014_det_validation_blacklist.txt'
  path.write_text(f'3 {fx.ANT}\n3 {fx.AIRPLANE}\n7 {fx.ANT}\n3\nx {fx.ANT}\n5 {fx.ANT}\n3 n00000009\n')
  assert layout.blacklist_file() == str(path)
  report = report_lib.BuildReport('validation')
  got = imagenet_det.read_blacklist(str(path), {3: 'a/im3', 7: 'im7'}, {fx.ANT: 0, fx.AIRPLANE: 2}, report)
  assert got == {'a/im3': [0, 2], 'im7': [0]}
  assert dict(report.skipped) == {'blacklist_line_malformed': 2, 'blacklist_image_unknown': 1,
                                  'blacklist_class_unknown': 1}


def test_det_without_class_file_uses_annotated_wnids(tmp_path):
  root = fx.write_det(str(tmp_path / 'det'), with_map=False, with_blacklist=False)
  builder = build_lib.build('ilsvrc2014_det', str(tmp_path / 'tfds'), root, 'original')
  classes = imagenet_det.det_classes(os.fspath(builder.data_dir))
  assert [w for w, _ in classes] == ['n00000001', fx.ANT, fx.ACCORDION, fx.AIRPLANE]
  assert builder.info.metadata['class_source'] == 'WNIDs found in the annotations'
  assert builder.info.metadata['blacklist_source'] is None  # no blacklist file: nothing ignored
  assert all(r['ignore_classes'].size == 0 for r in _records(builder, 'validation').values())


def test_det_class_list_formats(tmp_path):
  (tmp_path / 'map_det.txt').write_text(f'{fx.AIRPLANE} 2 airplane\n{fx.ACCORDION} 1 accordion\n')
  (tmp_path / 'det_synsets.txt').write_text(f'{fx.ANT} ant, emmet, pismire\n')
  assert imagenet_det.read_class_list(str(tmp_path / 'map_det.txt')) == [
      (fx.ACCORDION, 'accordion'), (fx.AIRPLANE, 'airplane')]
  assert imagenet_det.read_class_list(str(tmp_path / 'det_synsets.txt')) == [(fx.ANT, 'ant, emmet, pismire')]


def _cli(*args):
  env = dict(os.environ, PYTHONPATH=REPO)
  return subprocess.run([sys.executable, '-m', 'overfeat_jax.build_dataset', *args], capture_output=True,
                        text=True, cwd=REPO, env=env, timeout=120)


def test_cli_bad_path_is_one_line_exit_2(tmp_path):
  result = _cli('--dataset=ilsvrc2012_cls_loc', f'--manual_dir={tmp_path}/nope', f'--data_dir={tmp_path}/d')
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and 'is not a directory' in lines[0]


def test_cli_builds_and_prints_report(tmp_path):
  root = fx.write_det(str(tmp_path / 'det'))
  result = _cli('--dataset=ilsvrc2014_det', f'--manual_dir={root}', f'--data_dir={tmp_path}/d',
                '--config=original')
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'train: kept 4, skipped 3' in result.stdout and 'skipped  image_missing: 1' in result.stdout


def test_rebuild_is_a_no_op_and_keeps_the_report(det_built, tmp_path):
  data_dir = os.fspath(det_built.data_dir_root)
  before = report_lib.read_report(det_built.data_dir)
  (tmp_path / 'unrelated.txt').write_text('not a DET layout: never read, the dataset exists')
  again = build_lib.build('ilsvrc2014_det', data_dir, str(tmp_path), 'original')
  assert os.fspath(again.data_dir) == os.fspath(det_built.data_dir)
  assert report_lib.read_report(again.data_dir) == before


def test_embedded_dataset_routes_to_its_builder():
  loader, needs_manual, _ = build_lib.DATASETS['embedded']
  assert loader().__name__ == 'Embedded' and not needs_manual
