"""Checkpoint manager: retention (latest K + best), atomic tmp dirs, corrupt-checkpoint fallback, per-process
input positions, and what is not corruption (another model config, another process count, a transient OSError)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from overfeat_jax.checkpoint import manager as ckpt
from overfeat_jax.errors import InputError


def _state(value: float, width: int = 4) -> dict:
  return {'params': {'w': jnp.full((4, width), value), 'b': jnp.full((width,), value)},
          'step': jnp.asarray(int(value))}


def _save_steps(directory, steps, metrics=None, **kwargs):
  mngr = ckpt.make_manager(directory, **kwargs)
  for s in steps:
    ckpt.save(mngr, s, _state(float(s)), {'task': 't'}, None if metrics is None else metrics.get(s), data=f'pos{s}')
  mngr.wait_until_finished()
  mngr.close()


def test_round_trip_is_exact_and_meta_comes_back(tmp_path):
  _save_steps(tmp_path / 'c', [1, 2])
  mngr = ckpt.make_manager(tmp_path / 'c')
  step, state, meta = ckpt.restore_latest(mngr, ckpt.abstract_like(_state(0.0)))
  assert step == 2 and meta == {'task': 't', 'data': 'pos2'}
  assert 'process_0-of-1.json' in os.listdir(tmp_path / 'c' / '2' / 'data')  # grain's per-process file
  np.testing.assert_array_equal(state['params']['w'], np.full((4, 4), 2.0))
  assert isinstance(state['params']['w'], jax.Array)


def test_keeps_latest_k_plus_the_best(tmp_path):
  errors = {1: {'err': 0.5}, 2: {'err': 0.1}, 3: {'err': 0.4}, 4: None, 5: {'err': 0.3}}
  _save_steps(tmp_path / 'c', [1, 2, 3, 4, 5], metrics=errors, max_to_keep=2, best_metric='err')
  assert sorted(ckpt.make_manager(tmp_path / 'c').all_steps()) == [2, 4, 5]


def test_saves_without_metrics_print_no_tracked_metric_warning(tmp_path, caplog):
  """Between evaluations the trainer saves without metrics; orbax's `Requested tracked_metric` warning at each
  such save is dropped (only that message: absl's other warnings still pass)."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  with caplog.at_level('INFO'):
    _save_steps(tmp_path / 'c', [1, 2, 3], metrics={2: {'err': 0.5}}, best_metric='err')
    logging.warning('another warning')
  assert not [r for r in caplog.records if 'tracked_metric' in r.getMessage()]
  assert 'another warning' in caplog.messages
  assert sorted(ckpt.make_manager(tmp_path / 'c').all_steps()) == [2, 3]


def test_corrupt_latest_falls_back_to_previous_with_a_warning(tmp_path):
  _save_steps(tmp_path / 'c', [1, 2, 3], max_to_keep=3)
  latest = tmp_path / 'c' / '3' / 'state'
  data_files = [os.path.join(d, f) for d, _, fs in os.walk(latest) for f in fs if 'd' in d.split(os.sep)[-1]]
  assert data_files, list(os.walk(latest))
  for f in data_files:  # truncate the array data of the newest checkpoint
    with open(f, 'r+b') as fh:
      fh.truncate(3)
  warnings = []
  mngr = ckpt.make_manager(tmp_path / 'c')
  step, state, _ = ckpt.restore_latest(mngr, ckpt.abstract_like(_state(0.0)), warn=warnings.append)
  assert step == 2
  np.testing.assert_array_equal(state['params']['b'], np.full((4,), 2.0))
  assert len(warnings) == 1 and str(tmp_path / 'c' / '3') in warnings[0]


def test_deleted_file_falls_back_too_and_nothing_left_gives_none(tmp_path):
  _save_steps(tmp_path / 'c', [1])
  os.remove(tmp_path / 'c' / '1' / 'meta' / 'metadata')
  warnings = []
  assert ckpt.restore_latest(ckpt.make_manager(tmp_path / 'c'), ckpt.abstract_like(_state(0.0)),
                             warn=warnings.append) is None
  assert '1' in warnings[0]


def test_unfinished_tmp_directory_is_not_a_step(tmp_path):
  _save_steps(tmp_path / 'c', [1])
  os.makedirs(tmp_path / 'c' / '2.orbax-checkpoint-tmp-123' / 'state')
  mngr = ckpt.make_manager(tmp_path / 'c')
  assert mngr.all_steps() == [1]
  assert ckpt.restore_latest(mngr, ckpt.abstract_like(_state(0.0)))[0] == 1


def _listing(directory) -> list[str]:
  return sorted(os.path.relpath(os.path.join(d, f), directory) for d, _, fs in os.walk(directory) for f in fs)


def test_another_model_shape_stops_naming_the_parameter_and_touches_nothing(tmp_path):
  _save_steps(tmp_path / 'c', [1, 2])
  before = _listing(tmp_path / 'c')
  with pytest.raises(InputError) as e:
    ckpt.restore_latest(ckpt.make_manager(tmp_path / 'c'), ckpt.abstract_like(_state(0.0, width=2)))
  message = str(e.value)
  assert '\n' not in message and 'params/b has shape (4,) there and (2,) here' in message, message
  assert str(tmp_path / 'c' / '2') in message
  assert _listing(tmp_path / 'c') == before  # nothing quarantined, nothing rewritten


def test_a_missing_parameter_is_a_mismatch_too(tmp_path):
  _save_steps(tmp_path / 'c', [1])
  extra = _state(0.0)
  extra['params']['v'] = jnp.zeros((3,))
  with pytest.raises(InputError, match=r'params/v has shape absent there and \(3,\) here'):
    ckpt.restore_latest(ckpt.make_manager(tmp_path / 'c'), ckpt.abstract_like(extra))


def test_another_process_count_stops_naming_both_counts(tmp_path):
  _save_steps(tmp_path / 'c', [1])
  data = tmp_path / 'c' / '1' / 'data'
  os.rename(data / 'process_0-of-1.json', data / 'process_0-of-2.json')  # as a 2-process run leaves it
  (data / 'process_1-of-2.json').write_text('pos1')
  before = _listing(tmp_path / 'c')
  with pytest.raises(InputError, match='saved by 2 processes, this run has 1'):
    ckpt.restore_latest(ckpt.make_manager(tmp_path / 'c'), ckpt.abstract_like(_state(0.0)))
  assert _listing(tmp_path / 'c') == before


class _Flaky:
  """A manager whose restore raises OSError `failures` times, then works."""

  def __init__(self, manager, failures: int):
    self._manager, self.failures, self.calls = manager, failures, 0

  def __getattr__(self, name):
    return getattr(self._manager, name)

  def restore(self, *args, **kwargs):
    self.calls += 1
    if self.calls <= self.failures:
      raise OSError(5, 'Input/output error (transient)')
    return self._manager.restore(*args, **kwargs)


def test_transient_oserror_is_retried_not_quarantined(tmp_path, monkeypatch):
  monkeypatch.setattr(ckpt, 'IO_RETRIES', (0.0, 0.0, 0.0))
  _save_steps(tmp_path / 'c', [1, 2])
  flaky = _Flaky(ckpt.make_manager(tmp_path / 'c'), failures=2)
  step, state, _ = ckpt.restore_latest(flaky, ckpt.abstract_like(_state(0.0)), warn=pytest.fail)
  assert step == 2 and flaky.calls == 3
  np.testing.assert_array_equal(state['params']['w'], np.full((4, 4), 2.0))


def test_persistent_oserror_stops_without_touching_anything(tmp_path, monkeypatch):
  monkeypatch.setattr(ckpt, 'IO_RETRIES', (0.0, 0.0))
  _save_steps(tmp_path / 'c', [1, 2])
  before = _listing(tmp_path / 'c')
  flaky = _Flaky(ckpt.make_manager(tmp_path / 'c'), failures=99)
  with pytest.raises(InputError, match='failed 3 times'):
    ckpt.restore_latest(flaky, ckpt.abstract_like(_state(0.0)), warn=pytest.fail)
  assert flaky.calls == 3 and _listing(tmp_path / 'c') == before
