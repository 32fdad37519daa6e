"""Test session set-up: 8 simulated CPU devices, no accelerator and XLA's cheap compile (tests/xla_flags.py),
before jax is imported anywhere; processes the tests start inherit the environment."""

import os

from tests import xla_flags

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ['XLA_FLAGS'] = xla_flags.xla_flags(8, os.environ.get('XLA_FLAGS', ''))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')


import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory):
  """The smoke config's embedded dataset (64 train, 16 test images), built once per test process.

  Shared by the fault-injection and bad-input suites; a module may override it with its own `data_dir`.
  """
  from overfeat_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  d = tmp_path_factory.mktemp('embedded_data')
  for split in ('train', 'test'):
    pipeline.open_source('embedded_cls_loc', split, data_dir=str(d), train_size=64, test_size=16)
  return d


# Relative weights (rough seconds on 2 cores) of the heaviest test files, for ordering only. Under `pytest -n 2`
# (setup.cfg: `--dist loadfile --no-loadscope-reorder`) xdist hands whole files to the two workers
# in collection order, a new one whenever a worker runs dry, so a module's fixtures (a shared training run) are
# built once; putting the longest files first keeps one worker from starting a long file while the other idles.
HEAVY_FILES = {
    'tests/faults/test_multihost.py': 450, 'tests/data/test_own_data_train.py': 120,
    'tests/faults/test_gcs_workdir.py': 280, 'tests/bad_input/test_entry_points.py': 240,
    'tests/train/test_resume.py': 150, 'tests/train/test_read_as_hosts.py': 150, 'tests/test_wheel.py': 107,
}
SLOW_FILE_S = 60  # any other file with a test marked slow


def pytest_collection_modifyitems(config, items):
  """Under xdist: the files in order of HEAVY_FILES seconds, then those with a slow test, then the rest (each
  group in collection order; a file's tests stay together and in order)."""
  del config
  if not os.environ.get('PYTEST_XDIST_WORKER'):
    return
  weight = {}
  for item in items:
    path = item.nodeid.split('::', 1)[0]
    slow = SLOW_FILE_S if item.get_closest_marker('slow') else 0
    weight[path] = max(weight.get(path, 0), HEAVY_FILES.get(path, slow))
  items.sort(key=lambda item: -weight[item.nodeid.split('::', 1)[0]])
