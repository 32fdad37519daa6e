"""Config files in and out: the saved training config round trip, bad JSON, the default config by module path,
input sizes below the network's minimum refused when the settings are read."""

import json
import os

import ml_collections
import pytest

from overfeat_jax import config_files
from overfeat_jax.errors import InputError
from tests.bad_input.cli_runner import assert_one_line_error, run_cli
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
  (tmp_path / 'folder.json').mkdir()  # unreadable as a file: the OS's reason, not "not valid JSON"
  with pytest.raises(InputError, match=r'^cannot read the training config .*folder\.json: Is a directory\.$'):
    config_files.read_json(str(tmp_path / 'folder.json'), 'training config')


def test_default_config_is_a_module_path_to_the_demo_config():
  path = config_files.module_file(config_files.DEFAULT_CONFIG)
  assert os.path.samefile(path, os.path.join(CONFIGS, 'embedded.py'))
  assert config_files.load_file(path, 'default_config').get_config('smoke').to_dict() == \
      load_config('embedded', 'smoke').to_dict()
  with pytest.raises(InputError, match='no config module'):
    config_files.module_file('overfeat_jax.configs.no_such_config')


# (config field, override as a user gives it, the stage whose settings read it); embedded smoke: small / 4, 53 px
TOO_SMALL = [('eval.scales', ('eval', 'scales', (72, 8)), 'classification'),
             ('crop_size', ('crop_size', 40), 'classification'),
             ('eval.resize', ('eval', 'resize', 52), 'classification'),
             ('box.eval_scales', ('localization', 'box', 'eval_scales', (8,)), 'localization'),
             ('box.train_scales', ('detection', 'box', 'train_scales', ((64, 64), (96, 40))), 'detection')]


def smoke_config_with(override: tuple) -> ml_collections.ConfigDict:
  """The embedded smoke config with one field set: `override` = (section names..., field, value)."""
  config = load_config('embedded', 'smoke')
  section = config
  for name in override[:-2]:
    section = section[name]
  section[override[-2]] = override[-1]
  return config


@pytest.mark.parametrize('field,override,stage', TOO_SMALL, ids=[t[0] for t in TOO_SMALL])
def test_input_sizes_below_the_network_minimum_are_one_input_error(field, override, stage):
  config = smoke_config_with(override)
  with pytest.raises(InputError, match=rf'^--config\.{field}=.* minimum input of 53 pixels.*use 53 or more'):
    config_files.settings_from_config(config, stage)


def test_a_box_view_below_the_network_minimum_is_accepted_since_only_its_scales_reach_the_network():
  """box.eval_size is the square view that box.eval_scales are resized from (it was refused below the network's
  minimum input, as if the network saw it); a size below 1 is still an error."""
  config = load_config('embedded', 'smoke')
  config.detection.box.eval_size = 30
  assert config_files.settings_from_config(config, 'detection').box.eval_size == 30
  config.detection.box.eval_size = 0
  with pytest.raises(InputError, match=r'^--config\.box\.eval_size=0 must be a positive number of pixels$'):
    config_files.settings_from_config(config, 'detection')


@pytest.mark.parametrize('field,override,stage', [('eval.resize', ('eval', 'resize', 10_000), 'classification'),
                                                  ('box.eval_size', ('detection', 'box', 'eval_size', 10_000),
                                                   'detection')])
def test_an_evaluation_view_above_the_image_size_limit_is_refused(field, override, stage):
  """The host makes an S x S view of every evaluation image: S above Pillow's pixel limit is refused up front."""
  with pytest.raises(InputError, match=rf'^--config\.{field}=10000 asks for a 10000x10000 view .* at most 9459$'):
    config_files.settings_from_config(smoke_config_with(override), stage)


@pytest.mark.parametrize('field,override,stage', [('eval.scales', ('eval', 'scales', ()), 'classification'),
                                                  ('box.eval_scales', ('localization', 'box', 'eval_scales', ()),
                                                   'localization')])
def test_an_empty_evaluation_scale_list_is_refused_before_training(field, override, stage):
  """An empty scale list passed the checks and failed at the first evaluation, after training ('need at least one
  array to stack')."""
  config = smoke_config_with(override)
  with pytest.raises(InputError, match=rf'^--config\.{field} is empty: .* at least one'):
    config_files.settings_from_config(config, stage)


def test_only_a_box_stage_resizes_its_training_batches():
  """`box.train_scales` is the localization/detection stages' per-step whole-batch resize: a `box` section at the
  top level (shared by every stage) leaves classification's batches as they are (it resized them: the gate was
  `'box' in cfg`, not the stage)."""
  values = load_config('embedded').to_dict()
  values['box'] = values['localization']['box']
  config = ml_collections.ConfigDict(values)
  scales = {s: config_files.input_settings(config_files.stage_config(config, s), s).train_scales
            for s in config.stages}
  assert scales['classification'] == ()
  assert scales['localization'] == ((64, 64), (80, 80), (96, 96), (112, 112))
  assert scales['detection'] == ((96, 96),)


def test_minimum_input_sizes_are_accepted():
  config = load_config('embedded', 'smoke')
  config.crop_size, config.eval.resize, config.eval.scales = 53, 53, ((53, 80),)
  assert config_files.settings_from_config(config, 'classification').eval.scales == ((53, 80),)


def test_main_refuses_a_too_small_scale_before_any_data_is_read(tmp_path):
  data_dir = tmp_path / 'data'  # empty: the embedded data would be built here (minutes) if the check came later
  done = run_cli('overfeat_jax.main', f'--config={CONFIGS}/embedded.py:smoke', f'--workdir={tmp_path / "w"}',
                 f'--config.data.data_dir={data_dir}', '--config.localization.box.eval_scales=(8,)', timeout=120)
  assert_one_line_error(done, '--config.box.eval_scales=((8, 8),)', 'use 53 or more')
  assert not data_dir.exists() or not any(data_dir.iterdir())
