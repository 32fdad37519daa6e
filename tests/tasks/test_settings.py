"""The typed settings read once from the config (`config_files.settings_from_config`)."""

import ml_collections
import pytest

from overfeat_jax import settings as settings_lib
from overfeat_jax.config_files import settings_from_config
from overfeat_jax.errors import InputError
from tests.train.helpers import load_config


def test_each_stage_reads_its_own_section_over_the_top_level():
  config = load_config('embedded', 'smoke')
  cls, loc, det = (settings_from_config(config, s) for s in settings_lib.TASK_NAMES)
  assert (cls.box, cls.mining, cls.num_outputs) == (None, None, 10)
  assert cls.model == settings_lib.ModelSettings('small', 32, 'float32', 0.3, 'he')
  assert cls.eval.scales == ((72, 72), (88, 88)) and cls.crop_size == 64
  assert loc.crop_size == 72 and loc.box.hidden == (32, 16) and loc.box.train_scales == ((64, 64),)
  assert loc.box.merge_average == 'pair' and loc.num_outputs == 10
  assert det.num_outputs == 11 and det.dataset == 'embedded_det' and det.box.merge_average == 'score'
  assert det.mining == settings_lib.MiningSettings(4, 4, 0.25)
  assert hash(det) == hash(settings_from_config(config, 'detection'))  # frozen: a static jit argument


def test_a_config_saved_before_a_field_existed_gets_its_default():
  config = load_config('embedded', 'smoke').to_dict()
  del config['localization']['box']['merge_average']
  loc = settings_from_config(ml_collections.ConfigDict(config), 'localization')
  assert loc.box.merge_average == 'pair' and loc.box.merge_threshold == 0.4


@pytest.mark.parametrize('stage, change, message', [
    ('segmentation', {}, 'unknown stage'),
    ('classification', {'dtype': 'float16'}, 'dtype must be one of'),
    ('localization', {'box_regression': 'per_box'}, 'box.regression must be one of')])
def test_bad_settings_are_one_line_errors(stage, change, message):
  config = load_config('embedded', 'smoke').to_dict()
  if 'dtype' in change:
    config['dtype'] = change['dtype']
  if 'box_regression' in change:
    config['localization']['box']['regression'] = change['box_regression']
  with pytest.raises(InputError, match=message):
    settings_from_config(ml_collections.ConfigDict(config), stage)


def test_a_box_stage_without_a_box_section_says_so():
  config = load_config('embedded', 'smoke').to_dict()
  del config['localization']['box']
  from overfeat_jax import tasks  # pylint: disable=g-import-not-at-top
  with pytest.raises(InputError, match=r'^the localization stage needs a box section \(config.localization.box\)'):
    tasks.make(settings_from_config(ml_collections.ConfigDict(config), 'localization'))
