"""Fixtures of the bad-input suite: the corpus (written per session into a tmp dir) and a tiny embedded
dataset for the trainer's config checks."""

import pytest

from tests.bad_input import corpus as corpus_lib


@pytest.fixture(scope='session')
def corpus(tmp_path_factory):
  return corpus_lib.write_corpus(tmp_path_factory.mktemp('bad_corpus'))


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory):
  from overfeat_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  d = tmp_path_factory.mktemp('embedded_data')
  for split in ('train', 'test'):
    pipeline.open_source('embedded_cls_loc', split, data_dir=str(d), train_size=64, test_size=16)
  return d
