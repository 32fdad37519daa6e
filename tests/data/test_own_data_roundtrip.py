"""The embedded det view written out (VOC folder, COCO file) and built back equals the view, record by record."""

import io

import numpy as np
import pytest
from PIL import Image

from overfeat_jax.data import build as build_lib
from overfeat_jax.data import draw
from overfeat_jax.data import embedded
from overfeat_jax.data import folders
from overfeat_jax.data import pipeline
from overfeat_jax.data import write_folders

SIZES = {'train_size': 12, 'test_size': 6}


@pytest.fixture(scope='module')
def written(tmp_path_factory):
  return write_folders.write_embedded_det(str(tmp_path_factory.mktemp('folders')), **SIZES)


@pytest.mark.parametrize('dataset', ['voc_folder', 'coco_json'])
def test_written_folders_build_back_to_the_det_view(written, dataset, tmp_path):
  voc, coco = written
  root = voc if dataset == 'voc_folder' else coco
  classes = f'{voc}/classes.txt' if dataset == 'voc_folder' else None
  builder = build_lib.build(dataset, str(tmp_path), root, name='det', smaller_side=0, classes=classes)
  assert folders.class_names(builder.data_dir) == list(draw.CLASS_NAMES[:10])
  config = embedded.make_config('det', **SIZES)
  for split, count in (('train', SIZES['train_size']), ('test', SIZES['test_size'])):
    src = pipeline.open_source(f'{dataset}/det', split, data_dir=str(tmp_path), decode_images=True)
    assert len(src) == count
    for i in range(count):
      record = src[i]
      index = int(record['image_id'].decode().rsplit('_', 1)[1])
      expected = embedded.draw_example(config, split, index)
      # The builder keeps the written JPEG bytes: the pixels are the embedded build's, bit for bit.
      stored = np.asarray(Image.open(io.BytesIO(embedded.encode_jpeg(expected['image']))))
      np.testing.assert_array_equal(record['image'], stored)
      np.testing.assert_array_equal(record['boxes'], expected['boxes'])
      np.testing.assert_array_equal(record['box_labels'], expected['box_labels'])
      assert record['ignore_boxes'].shape == (0, 4)
