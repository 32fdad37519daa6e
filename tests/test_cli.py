"""The CLIs' console filter: libraries' INFO chatter and expected warnings go, real warnings stay (one line)."""

import logging
import os
import signal
import subprocess
import sys

from overfeat_jax import cli
from tests.bad_input.cli_runner import REPO, run_cli


def _record(path: str, level: int, msg: str, exc: bool = False) -> logging.LogRecord:
  info = None
  if exc:
    try:
      raise OSError('disk full')
    except OSError:
      info = sys.exc_info()
  return logging.LogRecord('absl', level, path, 1, msg, (), info)


def test_library_info_and_expected_warnings_are_dropped_real_warnings_kept_without_traceback():
  keep = cli._LibraryInfoFilter().filter  # pylint: disable=protected-access
  orbax = '/venv/site-packages/orbax/checkpoint/_src/checkpoint_manager.py'
  tfds = '/venv/site-packages/tensorflow_datasets/core/dataset_builder.py'
  assert not keep(_record(orbax, logging.INFO, 'CheckpointManager created'))
  assert not keep(_record(tfds, logging.WARNING, 'Using custom data configuration: EmbeddedConfig(...)'))
  assert not keep(_record(orbax, logging.WARNING, 'Metadata file does not exist: /w/3/state/_CHECKPOINT_METADATA'))
  failed = _record(orbax, logging.ERROR, 'async save failed', exc=True)
  assert keep(failed) and failed.exc_info is None  # the message stays, its traceback goes
  assert keep(_record(orbax, logging.WARNING, 'Checkpoint 12 is incomplete'))
  assert keep(_record('/work/overfeat_jax/train/loop.py', logging.INFO, 'train [####] 20%'))  # our own lines


def test_orbax_tracked_metric_warning_of_every_save_without_metrics_is_dropped():
  keep = cli._LibraryInfoFilter().filter  # pylint: disable=protected-access
  orbax = '/venv/site-packages/orbax/checkpoint/checkpoint_manager.py'
  assert not keep(_record(orbax, logging.WARNING, 'Requested `tracked_metric`; did not provide metrics.'))


def _unknown_field_error(monkeypatch, override: str, error: Exception) -> str:
  monkeypatch.setattr(sys, 'argv', ['main.py', '--config=experiments/configs/embedded.py:smoke', override])
  return cli._describe(error)  # pylint: disable=protected-access


def test_a_mistyped_config_override_is_named_with_its_suggestion_in_plain_words(monkeypatch):
  # What ml_collections raises for `--config.batchsize=8` (a KeyError inside an AttributeError) and for an
  # unknown top-level section of a dotted override (a bare KeyError).
  typo = AttributeError(KeyError('\'batchsize\'\nDid you mean "batch_size" instead of "batchsize"?'))
  message = _unknown_field_error(monkeypatch, '--config.batchsize=8', typo)
  assert message == ('--config.batchsize: the config has no field \'batchsize\'; '
                     'did you mean "batch_size" instead of "batchsize"?')
  message = _unknown_field_error(monkeypatch, '--config.nothing.at.all=8', KeyError("'nothing'"))
  assert message == "--config.nothing.at.all: the config has no field 'nothing'"


def test_an_unknown_plain_flag_is_not_blamed_on_the_config_file():
  argv = ['main.py', '--config=experiments/configs/embedded.py:smoke', '--workdri=x']
  unknown = "Unknown command line flag 'workdri'. Did you mean: workdir ?"
  assert cli._name_config_file(argv, unknown) == unknown  # pylint: disable=protected-access
  config_error = 'ValueError: unknown config argument'
  assert cli._name_config_file(argv, config_error).startswith(  # pylint: disable=protected-access
      '--config=experiments/configs/embedded.py: ')


def test_help_is_a_success_and_a_bad_flag_is_exit_2():
  """absl exits 1 after printing the help; the CLIs turned every 1 into 2 (a user error): --help now exits 0."""
  for flag in ('--help', '--helpfull'):
    done = run_cli('overfeat_jax.show_embedded', flag)
    assert done.returncode == 0 and '--view' in done.stdout + done.stderr, (flag, done.stderr[-1000:])
  done = run_cli('overfeat_jax.show_embedded', '--no_such_flag')
  assert done.returncode == 2, done.stderr[-1000:]


def test_ctrl_c_is_one_line_and_exit_130_in_every_cli(tmp_path):
  """build_dataset (and sweep) printed a KeyboardInterrupt traceback on Ctrl-C (field case); `cli.run` now ends
  every CLI with one line and status 130, as `main` does."""
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=str(REPO))
  proc = subprocess.Popen([sys.executable, '-m', 'overfeat_jax.build_dataset', '--dataset=embedded',
                           f'--data_dir={tmp_path}'], cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  for line in proc.stdout:  # interrupt once the build has started
    if line.startswith('Building embedded/'):
      break
  proc.send_signal(signal.SIGINT)
  _, stderr = proc.communicate(timeout=120)
  assert proc.returncode == 130, stderr[-2000:]
  assert 'Traceback' not in stderr and stderr.strip().splitlines()[-1].startswith(
      'build_dataset.py: interrupted: (Ctrl-C) stopped'), stderr[-2000:]
