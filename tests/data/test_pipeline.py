"""Tests of the input pipelines: determinism, exact resumption, host sharding, exact eval, global arrays."""

import json
import os
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from overfeat_jax.data import pipeline
from overfeat_jax.errors import InputError
from tests.record_list import RecordList


class ListSource(RecordList):
  """A random-access source whose record `i` has `label = i` (to see which records a batch holds)."""

  def __init__(self, n: int, size: int = 20):
    rng = np.random.default_rng(0)
    self._records = [{'image': rng.integers(0, 256, (size, size + 4, 3), dtype=np.uint8), 'label': i,
                      'boxes': np.array([[2, 2, 12, 12]], np.float32), 'box_labels': np.array([i % 5])}
                     for i in range(n)]


TRAIN = dict(crop_size=16, resize_smaller=None, max_boxes=2)


@pytest.fixture(scope='module')
def det_source(tmp_path_factory):
  return pipeline.open_source('embedded_det', 'train', data_dir=str(tmp_path_factory.mktemp('tfds')),
                              train_size=40, test_size=7, seed=1)


def _equal(a, b):
  return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_same_seed_same_batches_other_seed_differs(det_source):
  kw = dict(global_batch_size=8, crop_size=64, resize_smaller=None, max_boxes=4)
  first = pipeline.train_iterator(det_source, seed=0, **kw)
  second = pipeline.train_iterator(det_source, seed=0, **kw)
  other = pipeline.train_iterator(det_source, seed=1, **kw)
  a, b, c = ([next(it) for _ in range(3)] for it in (first, second, other))
  assert all(_equal(x, y) for x, y in zip(a, b))
  assert not _equal(a[0], c[0])
  batch = a[0]
  assert batch['image'].shape == (8, 64, 64, 3) and batch['image'].dtype == np.uint8
  assert batch['boxes'].shape == (8, 4, 4) and batch['box_labels'].dtype == np.int32
  assert np.all(batch['label'] == -1)  # det has no label.


@pytest.mark.parametrize('workers', [0, pytest.param(2, marks=pytest.mark.slow)])  # 2: grain's round robin
def test_resumed_iterator_yields_exactly_the_uninterrupted_batches(det_source, workers):
  kw = dict(global_batch_size=8, crop_size=64, resize_smaller=80, max_boxes=4, seed=7, worker_count=workers)
  it = pipeline.train_iterator(det_source, **kw)
  for _ in range(3):
    next(it)
  state = it.get_state()
  json.loads(state)  # The trainer stores it in its JSON checkpoint item.
  expected = [next(it) for _ in range(8)]  # Runs past the end of epoch 0 (5 batches per epoch).
  resumed = pipeline.train_iterator(det_source, **kw)
  resumed.set_state(state)
  assert all(_equal(x, y) for x, y in zip(expected, (next(resumed) for _ in range(8))))


def test_state_saved_with_other_workers_is_refused(det_source):
  kw = dict(global_batch_size=8, crop_size=64, resize_smaller=None, max_boxes=4, seed=7)
  it = pipeline.train_iterator(det_source, **kw)
  next(it)
  with pytest.raises(InputError, match='[Ww]orker count'):
    pipeline.train_iterator(det_source, worker_count=1, **kw).set_state(it.get_state())


@pytest.mark.parametrize('value, cores, expected', [
    ('auto', 1, 0), ('auto', 2, 0), ('auto', 3, 0), ('auto', 4, 2), ('auto', 96, 94), (' AUTO ', 8, 6),
    (0, 96, 0), (3, 2, 3), ('5', 2, 5)])
def test_worker_count_auto_rule(value, cores, expected):
  assert pipeline.resolve_worker_count(value, cores=cores) == expected


@pytest.mark.parametrize('bad', [-1, 'many', '', 1.5, True, None, '-2'])
def test_bad_worker_count_is_an_input_error(bad):
  with pytest.raises(InputError, match='worker_count'):
    pipeline.resolve_worker_count(bad, cores=4)


def test_usable_cores_follow_the_affinity_mask():
  assert pipeline.usable_cores() == len(os.sched_getaffinity(0)) >= 1


def test_state_from_another_pipeline_is_refused(det_source):
  it = pipeline.train_iterator(det_source, global_batch_size=8, crop_size=64, resize_smaller=None,
                               max_boxes=4, seed=7)
  other = pipeline.train_iterator(ListSource(40), global_batch_size=8, seed=7, **TRAIN)
  with pytest.raises(InputError):
    other.set_state(it.get_state())


def test_epochs_reshuffle_and_augment_differently():
  it = pipeline.train_iterator(ListSource(20), global_batch_size=20, seed=0, num_epochs=2, **TRAIN)
  e0, e1 = next(it), next(it)
  assert sorted(e0['label']) == sorted(e1['label']) == list(range(20))
  assert not np.array_equal(e0['label'], e1['label'])
  with pytest.raises(StopIteration):
    next(it)


def test_two_hosts_see_disjoint_complete_halves_with_host_independent_crops():
  source = ListSource(50)
  labels, images = [], {}
  for host in range(2):
    it = pipeline.train_iterator(source, global_batch_size=10, seed=3, num_epochs=1, shard_index=host,
                                 shard_count=2, **TRAIN)
    batches = list(it)
    assert len(batches) == 5 and batches[0]['image'].shape[0] == 5
    host_labels = np.concatenate([b['label'] for b in batches])
    labels.append(set(host_labels.tolist()))
    for b in batches:
      images.update({int(l): im for l, im in zip(b['label'], b['image'])})
  assert not labels[0] & labels[1] and labels[0] | labels[1] == set(range(50))
  # One host over the same data: each record gets the same crop, since it is seeded by (seed, epoch, index).
  single = list(pipeline.train_iterator(source, global_batch_size=10, seed=3, num_epochs=1, shard_index=0,
                                        shard_count=1, **TRAIN))
  for b in single:
    for l, im in zip(b['label'], b['image']):
      np.testing.assert_array_equal(im, images[int(l)])


@pytest.mark.parametrize('shards', [1, 2, 3])
def test_eval_iterator_sees_every_example_once_with_masks(shards):
  source = ListSource(23)
  seen, batch_counts = [], []
  for host in range(shards):
    batches = list(pipeline.eval_iterator(source, batch_size=5, view='center_crop', size=16, max_boxes=2,
                                          shard_index=host, shard_count=shards))
    batch_counts.append(len(batches))
    for b in batches:
      assert b['image'].shape == (5, 16, 16, 3) and b['mask'].dtype == np.int32
      seen.extend(b['label'][b['mask'] == 1].tolist())
  assert sorted(seen) == list(range(23))
  assert len(set(batch_counts)) == 1  # Every host runs the same number of eval steps.


def test_eval_resize_view_and_padding_mask():
  batches = list(pipeline.eval_iterator(ListSource(7), batch_size=4, view='resize', size=(12, 14),
                                        max_boxes=3, shard_index=0, shard_count=1))
  assert [b['mask'].tolist() for b in batches] == [[1, 1, 1, 1], [1, 1, 1, 0]]
  assert batches[0]['image'].shape == (4, 12, 14, 3)
  expected = [2 * 14 / 24, 2 * 12 / 20, 12 * 14 / 24, 12 * 12 / 20]  # (2, 2, 12, 12) in 20 x 24 -> 12 x 14.
  np.testing.assert_allclose(batches[0]['boxes'][0, 0], expected, rtol=1e-6)
  assert batches[0]['box_labels'][0].tolist() == [0, -1, -1]


def test_to_global_on_eight_devices():
  assert jax.device_count() == 8
  mesh = Mesh(np.array(jax.devices()), ('data',))
  sharding = NamedSharding(mesh, P('data'))
  batch = next(pipeline.train_iterator(ListSource(32), global_batch_size=16, seed=0, **TRAIN))
  arrays = pipeline.to_global(batch, sharding)
  for k, v in batch.items():
    assert arrays[k].shape == v.shape and arrays[k].sharding == sharding
    assert len(arrays[k].addressable_shards) == 8 and arrays[k].addressable_shards[0].data.shape[0] == 2
    np.testing.assert_array_equal(np.asarray(arrays[k]), v)


def test_prefetcher_state_is_that_of_the_consumed_batches():
  source = ListSource(40)
  kw = dict(global_batch_size=4, seed=5, **TRAIN)
  prefetcher = pipeline.Prefetcher(pipeline.train_iterator(source, **kw), size=3)
  consumed = [next(prefetcher) for _ in range(2)]
  state = prefetcher.get_state()
  following = next(prefetcher)
  prefetcher.close()
  reference = pipeline.train_iterator(source, **kw)
  assert all(_equal(c, next(reference)) for c in consumed)
  resumed = pipeline.train_iterator(source, **kw)
  resumed.set_state(state)
  assert _equal(next(resumed), following)


def test_prefetcher_with_to_global_and_end_of_data():
  mesh = Mesh(np.array(jax.devices()), ('data',))
  sharding = NamedSharding(mesh, P('data'))
  it = pipeline.train_iterator(ListSource(16), global_batch_size=8, seed=0, num_epochs=1, **TRAIN)
  batches = list(pipeline.Prefetcher(it, lambda b: pipeline.to_global(b, sharding)))
  assert len(batches) == 2 and isinstance(batches[0]['image'], jax.Array)


def test_worker_processes(det_source):
  kw = dict(global_batch_size=8, crop_size=64, resize_smaller=None, max_boxes=4, seed=2)
  with_workers = pipeline.train_iterator(det_source, worker_count=1, **kw)
  in_process = pipeline.train_iterator(det_source, **kw)
  batches = [next(with_workers) for _ in range(2)]
  names = [a.shm.name for b in batches for a in b.values() if isinstance(a, pipeline.SharedMemoryArray)]
  assert names, 'the worker batches arrive in shared memory'
  # Their /dev/shm names are gone as soon as next() returns (nothing to leak at exit); the data stays.
  assert not [n for n in names if os.path.exists(os.path.join('/dev/shm', n.lstrip('/')))]
  assert all(_equal(b, next(in_process)) for b in batches)
  state = with_workers.get_state()
  with_workers.close()
  assert with_workers.get_state() == state  # what a checkpoint taken after the stage's end saves
  with pytest.raises(StopIteration):
    next(with_workers)


class _Endless:
  """A training iterator whose batches after the first take `delay` seconds each (a slow grain worker)."""

  def __init__(self, delay: float):
    self.delay, self.count, self.closed = delay, 0, False

  def __iter__(self):
    return self

  def __next__(self):
    time.sleep(self.delay if self.count else 0)
    self.count += 1
    return {'label': np.array([self.count])}

  def get_state(self):
    return str(self.count)

  def close(self):
    self.closed = True


@pytest.mark.parametrize('delay', [0.0, 6.0])
def test_prefetcher_close_stops_its_thread_and_drops_the_prefetched_batches(delay):
  """Closing a prefetcher whose thread waits on a full queue (delay 0) or for a slow next batch (delay 6 s, past
  close's first 5 s wait): the thread ends, the iterator is closed, no batch stays referenced, and a later
  next() ends the iteration instead of waiting forever."""
  source = _Endless(delay)
  prefetcher = pipeline.Prefetcher(source, size=2)
  assert next(prefetcher)['label'].tolist() == [1]
  if not delay:
    time.sleep(0.3)  # the thread fills the queue and waits to put the next batch
  prefetcher.close()
  assert source.closed and not prefetcher._thread.is_alive()  # pylint: disable=protected-access
  with pytest.raises(StopIteration):
    next(prefetcher)
  prefetcher.close()  # idempotent


_WORKERS_THEN_EXIT = """
import sys
from overfeat_jax.data import pipeline
if __name__ == '__main__':  # grain starts its workers with spawn
  source = pipeline.open_source('embedded_cls_loc', 'train', data_dir=sys.argv[1], train_size=64, test_size=16)
  it = pipeline.train_iterator(source, global_batch_size=8, crop_size=64, resize_smaller=None, max_boxes=4,
                               seed=0, worker_count=1)
  batches = pipeline.Prefetcher(it)
  next(batches), next(batches)
  batches.close()  # what the trainer does when a stage ends
  print('done')
"""


def test_closing_the_prefetcher_leaves_no_shared_memory_to_the_resource_tracker(data_dir, tmp_path):
  """The workers' prefetched batches live in shared memory; their names are unlinked on arrival and closing
  stops the workers, so the process ends without multiprocessing's 'There appear to be N leaked
  shared_memory objects' warning or a grain `__del__` traceback, although the prefetcher is still a global."""
  script = tmp_path / 'workers_then_exit.py'
  script.write_text(_WORKERS_THEN_EXIT)
  done = subprocess.run([sys.executable, str(script), str(data_dir)], capture_output=True, text=True,
                        timeout=300, check=False, env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert done.returncode == 0 and 'done' in done.stdout, done.stderr[-3000:]
  assert 'leaked shared_memory' not in done.stderr, done.stderr[-3000:]
  assert 'Exception ignored' not in done.stderr, done.stderr[-3000:]  # grain's iterator freed at close


def test_bad_arguments():
  with pytest.raises(InputError):
    pipeline.train_iterator(ListSource(8), global_batch_size=5, seed=0, shard_index=0, shard_count=2, **TRAIN)
  with pytest.raises(InputError):
    pipeline.train_iterator(ListSource(8), global_batch_size=4, seed=0, shard_index=2, shard_count=2, **TRAIN)
  with pytest.raises(InputError):
    pipeline.eval_iterator(ListSource(8), batch_size=4, view='corners', size=16, max_boxes=1)
  with pytest.raises(InputError):
    pipeline.open_source('coco', 'train', data_dir='/nonexistent')


def test_missing_imagenet_build_is_an_input_error(tmp_path):
  with pytest.raises(InputError):
    pipeline.open_source('ilsvrc2012_cls_loc', 'validation', data_dir=str(tmp_path))


def test_unshuffled_order_and_per_host_slices():
  it = pipeline.train_iterator(ListSource(10), global_batch_size=6, seed=0, shuffle=False, num_epochs=2,
                               shard_index=1, shard_count=2, **TRAIN)
  labels = np.concatenate([b['label'] for b in it]).tolist()
  # Host 1 reads records 5..9 for two epochs, in batches of 3; the last partial batch is dropped.
  assert labels == [5, 6, 7, 8, 9, 5, 6, 7, 8]


def _record_state(shard_index, shard_count, last_seen, workers=0):
  """A state as the per-record pipeline of earlier versions saved it (recorded from it: ListSource(40), global
  batch 8, seed 5, after 7 batches)."""
  return json.dumps({
      'version': 2, 'last_seen_indices': last_seen, 'last_worker_index': -1, 'worker_count': workers,
      'sampler': f'_EpochSampler(num_records=40, shard=ShardOptions(shard_index={shard_index}, '
                 f'shard_count={shard_count}, drop_remainder=True), shuffle=True, num_epochs=None, seed=5)',
      'data_source': '_KeyedSource(ListSource(40))'})


@pytest.mark.parametrize('shard_index, shard_count, following', [
    (0, 1, [20, 32, 25, 21, 22, 9, 7, 29]), (1, 2, [35, 24, 38, 32])])
def test_state_of_the_per_record_pipeline_continues_exactly(shard_index, shard_count, following):
  """A checkpoint written before batches became grain's elements resumes on the batch the old pipeline would
  have given next (its labels recorded from it), which is also this pipeline's 8th batch."""
  kw = dict(global_batch_size=8, seed=5, shard_index=shard_index, shard_count=shard_count, **TRAIN)
  resumed = pipeline.train_iterator(ListSource(40), **kw)
  resumed.set_state(_record_state(shard_index, shard_count, {'0': 55}))
  batch = next(resumed)
  assert batch['label'].tolist() == following
  uninterrupted = pipeline.train_iterator(ListSource(40), **kw)
  for _ in range(7):
    next(uninterrupted)
  assert _equal(batch, next(uninterrupted))
  assert json.loads(resumed.get_state())['sampler'].startswith('_BatchSampler(')


def test_state_of_the_per_record_pipeline_with_two_workers_or_other_arguments_is_refused():
  with pytest.raises(InputError, match='2 worker processes'):
    pipeline.train_iterator(ListSource(40), global_batch_size=8, seed=5, worker_count=2, **TRAIN).set_state(
        _record_state(0, 1, {'0': 54, '1': 55}, workers=2))
  with pytest.raises(InputError, match='other arguments'):
    pipeline.train_iterator(ListSource(40), global_batch_size=8, seed=6, **TRAIN).set_state(
        _record_state(0, 1, {'0': 55}))


def test_a_batch_is_its_records_read_together_from_a_tfds_source(det_source):
  """The records of a batch come through the tfds source's `__getitems__` (one read per batch): batch 1 of a
  shuffled epoch equals `train_batch` of the permutation's records read one by one, each seeded by its index."""
  from overfeat_jax.data import preprocess  # pylint: disable=g-import-not-at-top
  kw = dict(global_batch_size=8, crop_size=64, resize_smaller=None, max_boxes=4, seed=3)
  it = pipeline.train_iterator(det_source, **kw)
  next(it)
  order = np.random.default_rng([3, 0, 0]).permutation(len(det_source))[8:16].tolist()
  expected = preprocess.train_batch([det_source[k] for k in order],
                                    [preprocess.example_rng(3, 0, k) for k in order],
                                    crop_size=64, resize_smaller=None, max_boxes=4)
  assert _equal(next(it), expected)
