"""Tests of the embedded dataset: determinism, valid records, the det view's empty images, scales."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from overfeat_jax.data import draw, embedded
from overfeat_jax.errors import InputError

SMALL = dict(train_size=48, test_size=8)


def _records(builder, split='train'):
  src = builder.as_data_source(split=split)
  return sorted((src[i] for i in range(len(src))), key=lambda r: r['image_id'])


@pytest.fixture(scope='module')
def det_builder(tmp_path_factory):
  return embedded.build_embedded(str(tmp_path_factory.mktemp('det')), 'det', seed=5, **SMALL)


def test_same_seed_gives_identical_records_and_other_seed_differs(tmp_path, det_builder):
  again = embedded.build_embedded(str(tmp_path / 'a'), 'det', seed=5, **SMALL)
  other = embedded.build_embedded(str(tmp_path / 'b'), 'det', seed=6, **SMALL)
  first, second, third = _records(det_builder), _records(again), _records(other)
  assert len(first) == len(second) == 48
  for a, b in zip(first, second):
    assert a['image_id'] == b['image_id']
    np.testing.assert_array_equal(a['image'], b['image'])
    np.testing.assert_array_equal(a['boxes'], b['boxes'])
    np.testing.assert_array_equal(a['box_labels'], b['box_labels'])
  assert any(not np.array_equal(a['image'], c['image']) for a, c in zip(first, third))


def test_records_match_the_drawing_function(det_builder):
  config = det_builder.builder_config
  for rec in _records(det_builder, 'test')[:4]:
    index = int(rec['image_id'].decode()[-6:])
    ex = embedded.draw_example(config, 'test', index)
    np.testing.assert_array_equal(rec['boxes'], ex['boxes'])
    np.testing.assert_array_equal(rec['box_labels'], ex['box_labels'])
    # JPEG q95 4:4:4 is lossy but close (measured mean error ~3).
    assert np.abs(rec['image'].astype(int) - ex['image']).mean() < 5


def test_det_records_are_valid_and_some_images_are_empty(det_builder):
  records = _records(det_builder)
  counts = [len(r['boxes']) for r in records]
  assert 0 in counts and max(counts) >= 2 and max(counts) <= 4
  assert 'label' not in records[0]
  for r in records:
    assert r['image'].shape == (128, 128, 3) and r['image'].dtype == np.uint8
    assert r['boxes'].dtype == np.float32 and r['box_labels'].shape == (len(r['boxes']),)
    b = r['boxes']
    assert np.all(b >= 0) and np.all(b <= 128)
    assert np.all(b[:, 2] > b[:, 0]) and np.all(b[:, 3] > b[:, 1])
    assert np.all((r['box_labels'] >= 0) & (r['box_labels'] < 10))


def test_cls_loc_label_is_the_class_of_every_box(tmp_path):
  builder = embedded.build_embedded(str(tmp_path), 'cls_loc', num_classes=4, **SMALL)
  records = _records(builder)
  assert builder.info.features['label'].names == list(draw.CLASS_NAMES[:4])
  for r in records:
    assert r['image'].shape == (72, 72, 3)
    assert len(r['boxes']) >= 1
    assert np.all(r['box_labels'] == r['label'])
  assert len({int(r['label']) for r in records}) == 4


def test_object_scales_span_at_least_four_times():
  config = embedded.make_config('det')
  sides = []
  for i in range(150):
    boxes = embedded.draw_example(config, 'train', i)['boxes']
    sides.extend(np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]))
  sides = np.asarray(sides)
  assert sides.max() / sides.min() >= 4.0
  assert sides.min() <= 16 and sides.max() >= 50


def test_every_class_draws_a_distinct_silhouette():
  rng = np.random.default_rng(0)
  masks = [draw.silhouette(c, 32, rng) > 0.5 for c in range(len(draw.CLASS_NAMES))]
  for i, a in enumerate(masks):
    assert 0.1 < a.mean() < 0.95
    for b in masks[i + 1:]:
      assert (a != b).mean() > 0.05


def test_config_names_and_bad_options():
  assert embedded.make_config('det').name == 'det'
  assert embedded.make_config('det', seed=3).name == 'det_seed3'
  with pytest.raises(InputError):
    embedded.make_config('segmentation')
  with pytest.raises(InputError):
    embedded.make_config('det', num_classes=99)
  with pytest.raises(InputError):
    embedded.make_config('det', min_size=60, max_size=20)
  with pytest.raises(InputError):
    embedded.make_config('det', colour='red')


def test_sample_grid_size():
  grid = embedded.sample_grid('cls_loc', count=4, columns=2, zoom=2)
  assert grid.size == (2 * (144 + 4), 2 * (144 + 4))


def _command(module, *args):
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
  return subprocess.run([sys.executable, '-m', module, *args], capture_output=True, text=True, env=env,
                        timeout=300, check=False)


def test_show_embedded_command_writes_the_grid_and_bad_input_is_one_line(tmp_path):
  done = _command('overfeat_jax.show_embedded', '--view=det', f'--out={tmp_path}', '--count=2')
  assert done.returncode == 0, done.stderr[-2000:]
  path = done.stdout.strip().splitlines()[-1]
  assert path == str(tmp_path / 'embedded_det_samples.png') and Image.open(path).size == (6 * (384 + 4), 384 + 4)
  (tmp_path / 'a_file').write_text('x')  # --out under a file: one line naming it
  done = _command('overfeat_jax.show_embedded', f'--out={tmp_path / "a_file" / "grid"}', '--count=1')
  lines = done.stderr.strip().splitlines()
  assert done.returncode == 2 and len(lines) == 1, done.stderr
  assert lines[0].endswith(f'error: cannot create --out={tmp_path / "a_file" / "grid"}: Not a directory')
  # write_folders --out=<a file>: the OS error in plain words (was `write_folders.py: NotADirectoryError: [Errno 20]
  # ...`, field case), through the one CLI handler every entry point shares.
  done = _command('overfeat_jax.write_folders', f'--out={tmp_path / "a_file"}', '--train_size=1', '--test_size=1')
  lines = done.stderr.strip().splitlines()
  assert done.returncode == 2 and len(lines) == 1, done.stderr
  assert re.search(rf'error: cannot use {re.escape(str(tmp_path / "a_file"))}\S*: (File exists|Not a directory) '
                   r'\((a file is where a folder is needed|a part of the path is a file)\)$', lines[0]), lines[0]
  for module in ('overfeat_jax.show_embedded', 'overfeat_jax.write_folders'):  # --out missing
    done = _command(module)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].endswith('error: --out is required'), done.stderr


def _build_and_count(data_dir):
  from overfeat_jax.data import embedded as embedded_module  # pylint: disable=g-import-not-at-top
  builder = embedded_module.build_embedded(data_dir, 'det', train_size=24, test_size=6, seed=11)
  return len(builder.as_data_source(split='train'))


@pytest.mark.multiprocess
def test_processes_building_the_same_fresh_dataset_at_once_do_not_collide(tmp_path):
  """A multi-process run starts every process on the same fresh data_dir: one builds, the others wait."""
  import multiprocessing  # pylint: disable=g-import-not-at-top
  with multiprocessing.get_context('spawn').Pool(3) as pool:
    assert pool.map(_build_and_count, [str(tmp_path)] * 3) == [24, 24, 24]


def test_a_build_announces_local_records_not_a_download(tmp_path, capsys, caplog):
  """tfds printed 'Downloading and preparing dataset ...' for builds that download nothing (field case); every
  project builder says where its records come from instead, without tfds' 'Using custom data configuration'
  warning (the whole config, at every build and read of a configured builder)."""
  from overfeat_jax.data import embedded as embedded_module  # pylint: disable=g-import-not-at-top
  from overfeat_jax.data import folders, imagenet_cls_loc, imagenet_det  # pylint: disable=g-import-not-at-top
  from overfeat_jax.data import local_builder  # pylint: disable=g-import-not-at-top
  for cls in (embedded_module.Embedded, folders.FolderBuilder, imagenet_cls_loc.Ilsvrc2012ClsLoc,
              imagenet_det.Ilsvrc2014Det):
    assert issubclass(cls, local_builder.LocalBuilder), cls
  with caplog.at_level('INFO'):
    embedded_module.build_embedded(str(tmp_path), 'det', train_size=8, test_size=2, seed=3)
    embedded_module.build_embedded(str(tmp_path), 'det', train_size=8, test_size=2, seed=3)  # read, not built
  assert not [r for r in caplog.records if 'custom data configuration' in r.getMessage()]
  out = capsys.readouterr().out
  assert 'Downloading' not in out, out
  for words in ('Building embedded/', 'from its generator into', '(nothing is downloaded)', 'Built embedded/'):
    assert words in out, out
