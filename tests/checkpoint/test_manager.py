"""Checkpoint manager: retention (latest K + best), atomic tmp dirs, corrupt-checkpoint fallback."""

import os

import jax
import jax.numpy as jnp
import numpy as np

from overfeat_jax.checkpoint import manager as ckpt


def _state(value: float) -> dict:
  return {'params': {'w': jnp.full((4, 4), value), 'b': jnp.full((4,), value)}, 'step': jnp.asarray(int(value))}


def _save_steps(directory, steps, metrics=None, **kwargs):
  mngr = ckpt.make_manager(directory, **kwargs)
  for s in steps:
    ckpt.save(mngr, s, _state(float(s)), {'data': f'pos{s}'}, None if metrics is None else metrics.get(s))
  mngr.wait_until_finished()
  mngr.close()


def test_round_trip_is_exact_and_meta_comes_back(tmp_path):
  _save_steps(tmp_path / 'c', [1, 2])
  mngr = ckpt.make_manager(tmp_path / 'c')
  step, state, meta = ckpt.restore_latest(mngr, ckpt.abstract_like(_state(0.0)))
  assert step == 2 and meta == {'data': 'pos2'}
  np.testing.assert_array_equal(state['params']['w'], np.full((4, 4), 2.0))
  assert isinstance(state['params']['w'], jax.Array)


def test_keeps_latest_k_plus_the_best(tmp_path):
  errors = {1: {'err': 0.5}, 2: {'err': 0.1}, 3: {'err': 0.4}, 4: None, 5: {'err': 0.3}}
  _save_steps(tmp_path / 'c', [1, 2, 3, 4, 5], metrics=errors, max_to_keep=2, best_metric='err')
  assert sorted(ckpt.make_manager(tmp_path / 'c').all_steps()) == [2, 4, 5]


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
