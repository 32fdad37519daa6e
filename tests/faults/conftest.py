"""Session fixtures of the fault-injection suite: the embedded dataset (built once), JAX's compilation cache,
and one uninterrupted reference run that every interrupted run must reproduce bit for bit.
"""

import pytest

from tests.faults import harness

# The reference run: STEPS steps, a checkpoint every EVERY steps (and at the end).
STEPS, EVERY = 24, 4


@pytest.fixture(scope='session')
def cache_dir(tmp_path_factory):
  return tmp_path_factory.mktemp('jax_compilation_cache')


@pytest.fixture(scope='session')
def env(cache_dir):
  return harness.trainer_env(cache_dir)


@pytest.fixture(scope='session')
def reference(tmp_path_factory, data_dir, env):
  """(workdir, final step, final params) of an uninterrupted run."""
  workdir = tmp_path_factory.mktemp('reference')
  run = harness.Trainer(harness.trainer_flags(workdir / 'w', data_dir, STEPS, EVERY), env, workdir / 'log.txt')
  rc = run.wait()
  assert rc == 0, run.tail()
  step, params = harness.final_params(workdir / 'w')
  assert step == STEPS
  return workdir / 'w', step, params
