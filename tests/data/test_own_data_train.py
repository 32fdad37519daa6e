"""End to end from the CLI: the embedded det data written as a VOC folder and a COCO file, built back, and the
own_data smoke recipe (embedded classifier -> detection on the folder) trained and evaluated (mostly
compilation time: slow-marked)."""

import functools
import json
import os
import subprocess
import sys

import pytest

from tests import xla_flags

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(module: str, *args: str, cache: str, timeout: int = 1800) -> subprocess.CompletedProcess:
  """`python -m module args` with XLA's cheap compile (tests/xla_flags.py) and a compilation cache shared by the
  test's runs (the COCO run's detection programs are the VOC run's: compiled once)."""
  env = {'JAX_PLATFORMS': 'cpu', 'PATH': '/usr/bin:/bin', 'PYTHONPATH': REPO, 'XLA_FLAGS': xla_flags.FAST_COMPILE,
         'JAX_COMPILATION_CACHE_DIR': cache, 'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0',
         'JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES': '0'}
  out = subprocess.run([sys.executable, '-m', module, *args], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=timeout)
  assert out.returncode == 0, out.stderr[-3000:]
  return out


@pytest.mark.slow
def test_write_build_and_train_the_smoke_recipe_on_voc_and_coco(tmp_path):
  folders, data = tmp_path / 'folders', f'--data_dir={tmp_path}/tfds'
  run = functools.partial(_run, cache=str(tmp_path / 'jax_cache'))
  run('overfeat_jax.write_folders', f'--out={folders}', '--train_size=64', '--test_size=16')
  voc = run('overfeat_jax.build_dataset', '--dataset=voc_folder', f'--manual_dir={folders}/voc', data,
            '--name=embedded_det_smoke', f'--classes={folders}/voc/classes.txt', '--smaller_side=0')
  assert 'train: kept 64, skipped 0' in voc.stdout and 'test: kept 16, skipped 0' in voc.stdout
  run('overfeat_jax.build_dataset', '--dataset=coco_json', f'--manual_dir={folders}/coco', data,
      '--name=embedded_det_smoke', '--smaller_side=0')
  flags = [f'--config.data.data_dir={tmp_path}/tfds']
  out = run('overfeat_jax.main', '--config=experiments/configs/own_data.py:smoke', *flags,
            f'--workdir={tmp_path}/voc_run')
  assert 'detection: multiscale/mAP' in out.stdout
  config = json.loads((tmp_path / 'voc_run' / 'config.json').read_text())
  assert config['num_classes'] == 10 and config['detection']['data']['name'] == 'voc_folder/embedded_det_smoke'
  metrics = json.loads((tmp_path / 'voc_run' / 'metrics.json').read_text())
  assert metrics['detection']['multiscale/count'] == 16.0 and 0.0 <= metrics['detection']['multiscale/mAP'] <= 1
  # The COCO file: its own detection stage (the classifier's transfer is the VOC run's; here, the cheapest
  # run that trains and evaluates on the COCO-built records).
  run('overfeat_jax.main', '--config=experiments/configs/own_data.py:smoke,coco', *flags,
      '--config.stages=("detection",)', f'--workdir={tmp_path}/coco_run')
  config = json.loads((tmp_path / 'coco_run' / 'config.json').read_text())
  assert config['num_classes'] == 10 and config['detection']['data']['name'] == 'coco_json/embedded_det_smoke'
  metrics = json.loads((tmp_path / 'coco_run' / 'metrics.json').read_text())
  assert metrics['detection']['multiscale/count'] == 16.0
