"""The three stages through the loop: the registry, the per-step training scales' settings, the demo."""

import json
import os
import subprocess
import sys

import pytest

from overfeat_jax import config_files
from overfeat_jax.train import loop
from tests.train.helpers import REPO, load_config


def test_registry_holds_the_three_stages():
  assert set(loop.TASKS) == {'classification', 'localization', 'detection'}


def test_a_stage_named_twice_is_refused_before_any_work(tmp_path):
  config = load_config('embedded', 'smoke')
  config.stages = ('classification', 'classification')  # what `--config.stages=...` given twice makes
  with pytest.raises(loop.InputError, match='names a stage twice'):
    loop.train_and_evaluate(config, str(tmp_path / 'w'))
  assert not (tmp_path / 'w' / 'classification').exists()


def test_demo_config_runs_three_stages_with_their_sections():
  for arg in ('', 'smoke'):
    config = load_config('embedded', arg)
    assert tuple(config.stages) == ('classification', 'localization', 'detection')
    loc, det = config_files.stage_config(config, 'localization'), config_files.stage_config(config, 'detection')
    assert loc.box.regression == 'single' and det.data.name == 'embedded_det' and det.mining.num_hard > 0
    assert config_files.stage_config(config, 'classification').data.name == 'embedded_cls_loc'
  assert load_config('embedded_detection').to_dict() == load_config('embedded').to_dict()  # one source


def test_box_train_scales_reach_the_input_pipeline():
  """`box.train_scales` (the config name users know) is the input's per-step whole-batch scale list
  (`InputSettings.train_scales`, resized by the pipeline: tests/data/test_batch_scales.py); classification
  has none."""
  config = load_config('embedded')
  data = {s: config_files.input_settings(config_files.stage_config(config, s), s) for s in config.stages}
  assert data['localization'].train_scales == ((64, 64), (80, 80), (96, 96), (112, 112))
  assert data['detection'].train_scales == ((96, 96),) and data['classification'].train_scales == ()
  config.localization.box.train_scales = (64, (80, 96))  # ints are squares
  loc = config_files.input_settings(config_files.stage_config(config, 'localization'), 'localization')
  assert loc.train_scales == ((64, 64), (80, 96))


@pytest.mark.slow
def test_smoke_demo_runs_three_stages_and_prints_the_headline_numbers(tmp_path):
  """About a minute on 2 busy cores: `main` with the smoke config, end to end."""
  env = {'JAX_PLATFORMS': 'cpu', 'PATH': '/usr/bin:/bin'}
  out = subprocess.run([sys.executable, '-m', 'overfeat_jax.main', '--config=experiments/configs/embedded.py:smoke',
                        f'--workdir={tmp_path}', f'--config.data.data_dir={tmp_path / "tfds"}'], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  lines = {line.split(':')[0]: line for line in out.stdout.splitlines() if ':' in line}
  assert 'multiscale/top5_error' in lines['classification']
  assert 'multiscale/loc_error' in lines['localization'] and 'multiscale/mAP' in lines['detection']
  with open(tmp_path / 'metrics.json', encoding='utf-8') as f:
    metrics = json.load(f)
  assert set(metrics) == {'classification', 'localization', 'detection'}
  assert all(metrics[s]['final_step'] == 6 and metrics[s]['saved_at'] == 6 for s in metrics)  # was 4: field case
  assert config_files.load_config(str(tmp_path)).stages == ('classification', 'localization', 'detection')
  for stage in metrics:
    assert os.path.isdir(tmp_path / stage / 'checkpoints')


def _own_classes(monkeypatch, classes: dict[str, list[str]]):
  """Own datasets of the given class lists, without building them (`folders.class_names` per name)."""
  from overfeat_jax.data import folders  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(folders, 'dataset_dir', lambda data_dir, name: name)
  monkeypatch.setattr(folders, 'class_names', lambda name: list(classes[name]))


def test_num_classes_from_own_data_must_agree_with_every_stage(monkeypatch):
  """The 'Your photos' recipe with 3 classes trained the embedded 10-class classifier with 3 outputs (NaN loss
  after minutes: field case); two own datasets with the same classes in another order swapped labels."""
  from overfeat_jax.data.draw import CLASS_NAMES  # pylint: disable=g-import-not-at-top
  config = load_config('own_data', 'smoke')  # classification: embedded (10 classes); detection: own data
  det = config.detection.data.name
  _own_classes(monkeypatch, {det: CLASS_NAMES[:10]})
  assert loop.with_classes_from_data(config).num_classes == 10  # the shipped recipe
  _own_classes(monkeypatch, {det: ['circle', 'square', 'star']})
  with pytest.raises(loop.InputError, match=r"^the classification stage reads embedded\S* \(10 classes\) and "
                     r"the detection stage .* \(3 classes: circle, square, star\); a run's stages share one "
                     r'class list: .*--config.init.source='):
    loop.with_classes_from_data(config)
  config.data.name = 'image_folder/pets'
  _own_classes(monkeypatch, {det: ['cat', 'dog'], 'image_folder/pets': ['dog', 'cat']})
  with pytest.raises(loop.InputError, match=r"^the classification stage reads image_folder/pets with classes "
                     r"\['dog', 'cat'\] and the detection stage .* with \['cat', 'dog'\]"):
    loop.with_classes_from_data(config)
  _own_classes(monkeypatch, {det: ['cat', 'dog'], 'image_folder/pets': ['cat', 'dog']})
  assert loop.with_classes_from_data(config).num_classes == 2


def test_a_positive_num_classes_must_be_the_own_datasets_count(monkeypatch):
  """Field case: the embedded smoke config (num_classes 10) over a 2-class image folder trained a 10-way
  network whose predictions named classes 2-9; num_classes 1 made the loss non-finite at step 0."""
  config = load_config('embedded', 'smoke')
  config.data.name = 'image_folder/my_classes'
  _own_classes(monkeypatch, {'image_folder/my_classes': ['cat', 'dog']})
  for wrong in (10, 1):
    config.num_classes = wrong
    with pytest.raises(loop.InputError, match=rf'^num_classes = {wrong}, but the classification stage reads '
                       r'image_folder/my_classes with 2 classes \(cat, dog\): set --config.num_classes=0 .* or 2$'):
      loop.with_classes_from_data(config)
  config.num_classes = 2
  assert loop.with_classes_from_data(config) is config
  config.data.name = 'embedded_cls_loc'  # no own data: the config as it is
  config.num_classes = 10
  assert loop.with_classes_from_data(config) is config
