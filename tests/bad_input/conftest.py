"""Fixtures of the bad-input suite: the corpus (written per session into a tmp dir). The tiny embedded dataset
for the trainer's config checks is `data_dir` of tests/conftest.py."""

import pytest

from tests.bad_input import corpus as corpus_lib


@pytest.fixture(scope='session')
def corpus(tmp_path_factory):
  return corpus_lib.write_corpus(tmp_path_factory.mktemp('bad_corpus'))


