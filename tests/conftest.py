"""Test session set-up: 8 simulated CPU devices and no accelerator, before jax is imported anywhere."""

import os

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8').strip()
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
