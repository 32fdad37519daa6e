"""The CLIs' console filter: libraries' INFO chatter and expected warnings go, real warnings stay (one line)."""

import logging
import sys

from overfeat_jax import cli


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
