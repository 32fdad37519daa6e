"""`pipeline.HostsIterator`: one process reads the global batches of an N-host run, resumably."""

import json

import numpy as np
import pytest

from overfeat_jax.data import pipeline
from overfeat_jax.errors import InputError
from tests.data.test_pipeline import TRAIN, ListSource


def _equal(a, b):
  return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def _shards(source, hosts, **kw):
  return [pipeline.train_iterator(source, shard_index=i, shard_count=hosts, **kw) for i in range(hosts)]


@pytest.mark.parametrize('hosts', [2, 3])
def test_batches_are_the_shard_batches_concatenated_in_shard_order(hosts):
  source, kw = ListSource(41), dict(global_batch_size=6, seed=5, **TRAIN)
  shards = _shards(source, hosts, **kw)
  it = pipeline.hosts_train_iterator(source, num_hosts=hosts, **kw)
  for _ in range(9):  # Past the end of epoch 0 (41 // hosts records per shard, 6 // hosts per host batch).
    parts = [next(s) for s in shards]
    batch = next(it)
    assert batch['image'].shape == (6, 16, 16, 3)
    expected = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    assert _equal(batch, expected)
    # Host h's rows are at positions h*B/N..: its own slice of the records (the sampler's contiguous part).
    per_shard = 41 // hosts
    for h in range(hosts):
      rows = batch['label'][h * 6 // hosts:(h + 1) * 6 // hosts]
      assert np.all((rows >= h * per_shard) & (rows < (h + 1) * per_shard))


def test_state_restores_every_shard_exactly():
  source, kw = ListSource(30), dict(global_batch_size=4, seed=2, **TRAIN)
  it = pipeline.hosts_train_iterator(source, num_hosts=2, **kw)
  for _ in range(5):
    next(it)
  state = it.get_state()
  assert len(json.loads(state)['shards']) == 2  # JSON, as the checkpoint's meta item stores it.
  expected = [next(it) for _ in range(12)]  # Crosses an epoch (15 records per shard, 2 per host batch).
  resumed = pipeline.hosts_train_iterator(source, num_hosts=2, **kw)
  resumed.set_state(state)
  assert all(_equal(x, next(resumed)) for x in expected)
  assert resumed.get_state() == it.get_state()


def test_finite_epochs_end_together():
  it = pipeline.hosts_train_iterator(ListSource(12), num_hosts=2, global_batch_size=4, seed=0, num_epochs=1,
                                     **TRAIN)
  labels = np.concatenate([b['label'] for b in it])
  assert sorted(labels.tolist()) == list(range(12))


def test_mismatched_states_are_refused():
  source, kw = ListSource(20), dict(global_batch_size=4, seed=0, **TRAIN)
  two = pipeline.hosts_train_iterator(source, num_hosts=2, **kw)
  with pytest.raises(InputError, match='reading as 2 hosts, this run reads as 4'):
    pipeline.hosts_train_iterator(source, num_hosts=4, **kw).set_state(two.get_state())
  single = pipeline.train_iterator(source, **kw)
  with pytest.raises(InputError, match='one-host iterator state'):
    two.set_state(single.get_state())
  with pytest.raises(InputError):
    single.set_state(two.get_state())
  other_seed = pipeline.hosts_train_iterator(source, num_hosts=2, global_batch_size=4, seed=1, **TRAIN)
  with pytest.raises(InputError):
    other_seed.set_state(two.get_state())


def test_bad_arguments():
  kw = dict(global_batch_size=4, seed=0, **TRAIN)
  for bad in (0, -1, 1.5, True):
    with pytest.raises(InputError, match='num_hosts'):
      pipeline.hosts_train_iterator(ListSource(8), num_hosts=bad, **kw)
  with pytest.raises(InputError, match='shard_index'):
    pipeline.hosts_train_iterator(ListSource(8), num_hosts=2, shard_index=0, **kw)
  with pytest.raises(InputError, match='not divisible'):
    pipeline.hosts_train_iterator(ListSource(8), num_hosts=3, **kw)
