"""The loop's input settings (`config_files.input_settings`): `scale_jitter` reaches the pipeline, a bad range
is one InputError."""

import numpy as np
import pytest

from overfeat_jax import config_files
from overfeat_jax.errors import InputError
from overfeat_jax.train import inputs
from tests.train.helpers import load_config


def _config(data_dir, **fields):
  """The smoke config's input settings with top-level fields overridden."""
  config = load_config('embedded', 'smoke')
  config.data.data_dir = str(data_dir)
  config.update(fields)
  return config_files.input_settings(config, 'classification')


def test_scale_jitter_wins_over_resize_smaller(data_dir):
  assert _config(data_dir).train_resize == (64, 120)  # the demo's jitter
  assert _config(data_dir, scale_jitter=()).train_resize is None  # off: the stored 72-px images
  assert _config(data_dir, resize_smaller=80, scale_jitter=()).train_resize == 80
  assert _config(data_dir, resize_smaller=80, scale_jitter=(64, 120)).train_resize == (64, 120)


def test_jittered_batches_differ_and_boxes_stay_in_the_crop(data_dir):
  config = _config(data_dir, scale_jitter=(64, 144))
  source = inputs.open_split(config, 'train')
  batch = next(inputs.train_iterator(config, source))
  assert batch['image'].shape == (config.batch_size, 64, 64, 3)
  real = batch['box_labels'] >= 0
  widths = (batch['boxes'][..., 2] - batch['boxes'][..., 0])[real]
  assert np.all(widths > 0) and np.all(batch['boxes'][real] <= 64)
  plain = next(inputs.train_iterator(_config(data_dir, scale_jitter=()), source))
  assert not np.array_equal(plain['image'], batch['image'])


def test_bad_jitter_range_is_an_input_error(data_dir):
  config = _config(data_dir, scale_jitter=(96, 64))
  with pytest.raises(InputError, match='scale-jitter'):
    inputs.train_iterator(config, inputs.open_split(config, 'train'))
