"""Config files in and out: the saved training config round trip, bad JSON, the default config by module path."""

import json
import os

import pytest

from overfeat_jax import config_files
from overfeat_jax.errors import InputError
from tests.train.helpers import CONFIGS, load_config


def test_saved_config_is_the_resolved_config(tmp_path):
  config = load_config('embedded', 'smoke')
  config.batch_size = 8  # an override, as --config.batch_size=8 would apply
  config_files.save_config(config, str(tmp_path))
  with open(tmp_path / config_files.CONFIG_FILE, encoding='utf-8') as f:
    assert json.load(f)['batch_size'] == 8
  loaded = config_files.load_config(str(tmp_path))
  assert loaded.to_dict() == config.to_dict()  # tuples come back as tuples
  assert loaded.is_locked


def test_missing_config_is_none_and_bad_ones_are_one_input_error(tmp_path):
  assert config_files.load_config(str(tmp_path / 'none')) is None
  (tmp_path / config_files.CONFIG_FILE).write_text('{"stages": [')
  with pytest.raises(InputError, match='not valid JSON'):
    config_files.load_config(str(tmp_path))
  (tmp_path / config_files.CONFIG_FILE).write_text('{"batch_size": 8}')
  with pytest.raises(InputError, match='not a training config'):
    config_files.load_config(str(tmp_path))


def test_default_config_is_a_module_path_to_the_demo_config():
  path = config_files.module_file(config_files.DEFAULT_CONFIG)
  assert os.path.samefile(path, os.path.join(CONFIGS, 'embedded.py'))
  assert config_files.load_file(path, 'default_config').get_config('smoke').to_dict() == \
      load_config('embedded', 'smoke').to_dict()
  with pytest.raises(InputError, match='no config module'):
    config_files.module_file('overfeat_jax.configs.no_such_config')
