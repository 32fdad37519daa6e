"""Input pipelines: tfds array_record sources read with grain, per-host batches, global jax.Arrays, prefetch.

Why grain and not tf.data: the project has no TensorFlow (tfds writes and reads array_record without it, see
ENV_NOTES section 6); array_record gives random access, so a shuffled, sharded epoch is just a permutation
of record indices; and grain's iterator state is a few hundred bytes of JSON (the last batch each worker
built: grain's elements are whole batches, `_BatchSampler`), so a run resumes on exactly the next batch instead
of replaying or skipping data.

Sharding: each of `shard_count` hosts (default `jax.process_count()`) reads its own contiguous slice of the
records, then shuffles it (a permutation per epoch, `_BatchSource`), so hosts see disjoint data and
together all of it (minus the remainder of `num_records / shard_count`, dropped so every host runs the same
number of steps). Per-example randomness (crop, flip) comes from `(seed, epoch, record index)`
(`preprocess.example_rng`), so it does not depend on batch size, host count or worker count."""

import functools
import json
import os
import queue
import sys
import threading
from typing import Any, Callable, Iterator, Sequence

from absl import logging
import grain
# grain 0.2.18 exports SharedMemoryArray only under the legacy `grain.python`; the rest comes from `grain.*`.
from grain.python import SharedMemoryArray
import jax
import numpy as np
import tensorflow_datasets as tfds

from overfeat_jax.data import preprocess
from overfeat_jax.data.build import OWN_DATA  # '<builder>/<name>', docs/own_data.md
from overfeat_jax.errors import InputError

EMBEDDED = {'embedded_cls_loc': 'cls_loc', 'embedded_det': 'det'}
IMAGENET = ('ilsvrc2012_cls_loc', 'ilsvrc2014_det')


def open_source(name: str, split: str, *, data_dir: str, decode_images: bool = False,
                **embedded_options: Any) -> Any:
  """The tfds data source (random access, `src[i]` is a record dict) of one split.

  Args:
    name: 'embedded_cls_loc' / 'embedded_det' (built on demand, with `embedded_options`), or
      'ilsvrc2012_cls_loc' / 'ilsvrc2014_det', optionally with a config ('ilsvrc2012_cls_loc/resized256'),
      built beforehand with `python -m overfeat_jax.build_dataset` (docs/data_imagenet.md); or own data,
      'voc_folder/NAME', 'coco_json/NAME', 'image_folder/NAME' (built the same way, docs/own_data.md).
    split: e.g. 'train', 'test', 'validation'.
    data_dir: the tfds data directory.
    decode_images: False (default) leaves `image` as encoded bytes, so the preprocessing can decode at
      reduced DCT scale and only the crop (the fast path); True returns decoded uint8 arrays.
  """
  decoders = None if decode_images else {'image': tfds.decode.SkipDecoding()}
  if name in EMBEDDED:
    from overfeat_jax.data import embedded  # pylint: disable=g-import-not-at-top
    builder = embedded.build_embedded(data_dir, EMBEDDED[name], **embedded_options)
    return _as_source(builder, split, decoders)
  check_built(name, data_dir)
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir, decoders=decoders, download=False)
  except Exception as e:  # tfds raises several types for a missing build.
    first_line = (str(e).strip().splitlines() or [''])[0][:200]  # tfds appends its whole catalogue (5,000 chars)
    raise InputError(f'Cannot open {name!r} split {split!r} under {data_dir}: build it first with '
                     f'python -m overfeat_jax.build_dataset ({type(e).__name__}: {first_line})') from e


def check_built(name: str, data_dir: str) -> None:
  """InputError (one line) unless `name` is a dataset `build_dataset` makes (ImageNet, own data) and is built
  in `data_dir`. The embedded datasets are built on demand and always pass."""
  if name in EMBEDDED:
    return
  if name.split('/')[0] not in IMAGENET + OWN_DATA:
    raise InputError(f'Unknown dataset {name!r}; expected one of {sorted(EMBEDDED) + list(IMAGENET)} '
                     '(ImageNet names may carry a config, e.g. ilsvrc2012_cls_loc/resized256) or '
                     f'{"/NAME, ".join(OWN_DATA)}/NAME.')
  try:
    built = tfds.builder(name, data_dir=data_dir).is_prepared()
  except Exception:  # pylint: disable=broad-except  # e.g. an own-data name tfds has no config of: not built
    built = False
  if not built:
    doc = 'docs/own_data.md' if name.split('/')[0] in OWN_DATA else 'docs/data_imagenet.md'
    raise InputError(f'{name} is not built in {data_dir}: build it first with python -m '
                     f'overfeat_jax.build_dataset ({doc})')


def _as_source(builder: tfds.core.DatasetBuilder, split: str, decoders: Any) -> Any:
  if split not in builder.info.splits:
    raise InputError(f'No split {split!r}; available: {sorted(builder.info.splits)}.')
  return builder.as_data_source(split=split, decoders=decoders)


class _BatchSampler:
  """grain's sampler over whole batches: global index g is batch `g // shard_count` of shard `g % shard_count`.

  The grain `DataLoader` asks shard `s` of `S` for the global indices s, s + S, ...; the record key is the
  shard's batch number, which `_BatchSource` turns into its records. One grain element per batch, not per
  record: grain's per-record machinery (sampler call, metadata, monitoring, tree maps) cost ~10 % of the decode
  of a stored 341x256 JPEG (measured, docs/data_pipeline.md). The saved iterator state counts batches.
  """

  def __init__(self, num_records: int, shard: grain.sharding.ShardOptions, shuffle: bool,
               num_epochs: int | None, seed: int, batch_size: int):
    self._shard_count = shard.shard_count
    per_shard = num_records // shard.shard_count  # drop_remainder: every shard has this many.
    self._max_index = (None if num_epochs is None else
                       num_epochs * per_shard // batch_size * shard.shard_count)
    self._repr = (f'_BatchSampler(num_records={num_records}, shard={shard}, shuffle={shuffle}, '
                  f'num_epochs={num_epochs}, seed={seed}, batch_size={batch_size})')
    # The per-record pipeline's sampler (before 2026-11-30) with these arguments: `_upgrade_record_state`.
    self.record_repr = (f'_EpochSampler(num_records={num_records}, shard={shard}, shuffle={shuffle}, '
                        f'num_epochs={num_epochs}, seed={seed})')

  def __len__(self) -> int:
    return sys.maxsize if self._max_index is None else self._max_index

  def __repr__(self) -> str:
    return self._repr  # grain compares it when restoring a state.

  def __getitem__(self, index: int) -> grain.RecordMetadata:
    if index < 0 or (self._max_index is not None and index >= self._max_index):
      raise IndexError(f'Index {index} is past the last epoch.')
    return grain.RecordMetadata(index=index, record_key=index // self._shard_count)


class _BatchSource:
  """Batch b of one shard's stream -> its records, each with its epoch and index (for its random stream).

  Position p of the stream reads the shard's `records_per_shard` records (a contiguous slice) in a permutation
  drawn for each epoch from `(seed, epoch, shard)`; batch b holds positions b * batch_size ... (b + 1) *
  batch_size - 1, across an epoch boundary when the epoch does not divide into batches. So the batches do not
  depend on the worker count: worker w of W builds batches w, w + W, ... and grain returns them in order.
  Why not grain's `IndexSampler`: it computes each position with `index_shuffle` and builds a Philox generator
  per record; on 341x256 JPEGs that cost as much as decoding them (measured), a cached permutation costs ~0.
  """

  def __init__(self, source: Any, shard: grain.sharding.ShardOptions, shuffle: bool, seed: int,
               batch_size: int):
    self._source, self._shuffle, self._seed, self._batch_size = source, shuffle, seed, batch_size
    self._shard_index = shard.shard_index
    self._per_shard = len(source) // shard.shard_count
    self._start = shard.shard_index * self._per_shard
    self._read = getattr(source, '__getitems__', None) or (lambda keys: [source[k] for k in keys])
    self._order = (-1, np.arange(0))  # (epoch, permutation) of the epoch being read.

  def __len__(self) -> int:
    return sys.maxsize  # batches are counted by `_BatchSampler`

  def __repr__(self) -> str:
    return f'_BatchSource({self._source!r})'

  def _permutation(self, epoch: int) -> np.ndarray:
    cached_epoch, order = self._order
    if cached_epoch != epoch:
      order = np.random.default_rng([self._seed, epoch, self._shard_index]).permutation(self._per_shard)
      self._order = (epoch, order)  # One tuple assignment: safe with grain's reader threads.
    return order

  def __getitem__(self, batch: int) -> list[dict]:
    epochs, positions = np.divmod(np.arange(batch * self._batch_size, (batch + 1) * self._batch_size),
                                  self._per_shard)
    if self._shuffle:
      positions = np.concatenate([self._permutation(int(e))[positions[epochs == e]] for e in np.unique(epochs)])
    indices = (self._start + positions).tolist()
    return [{'record': record, 'epoch': epoch, 'index': index, 'batch': batch}
            for record, epoch, index in zip(self._read(indices), epochs.tolist(), indices)]


class _TrainBatcher:
  """`grain.transforms.Batch(1)`'s batch_fn: one `_BatchSource` element (a batch's keyed records) -> one
  training batch built in place (`preprocess.train_batch`), record i seeded by (seed, epoch, index), the whole
  batch at the training scale of its batch number (`preprocess.scale_of_batch(scales, batch)`; none: the crops).

  Why a batch function and not a per-record MapTransform followed by grain's stack: the per-record path paid
  grain's per-record map machinery, a 20 MB `np.stack` per batch of 128 at 231 px and a box transform per
  record; together they cost as much as a third of the decode (docs/data_pipeline.md). In a worker process
  grain asks for shared-memory output (`enable_shared_memory_output`): the image buffer is then allocated in
  shared memory, so the batch reaches the trainer without being pickled.
  """

  def __init__(self, seed: int, crop_size: int, resize_smaller: int | tuple[int, int] | None, max_boxes: int,
               scales: Sequence[tuple[int, int]] = ()):
    self._seed, self._crop, self._resize, self._max_boxes = seed, crop_size, resize_smaller, max_boxes
    self._scales = tuple(tuple(s) for s in scales)
    self._shared_memory = False

  def enable_shared_memory_output(self) -> None:
    self._shared_memory = True

  def __call__(self, batches: Sequence[list[dict]]) -> dict[str, np.ndarray]:
    (elements,) = batches
    scale = preprocess.scale_of_batch(self._scales, elements[0]['batch'])
    shape = (len(elements), *(scale or (self._crop, self._crop)), 3)
    out = SharedMemoryArray(shape, np.uint8) if self._shared_memory else np.empty(shape, np.uint8)
    rngs = [preprocess.example_rng(self._seed, e['epoch'], e['index']) for e in elements]
    return preprocess.train_batch([e['record'] for e in elements], rngs, crop_size=self._crop,
                                  resize_smaller=self._resize, max_boxes=self._max_boxes, out=out, scale=scale)


def _shard_options(shard_index: int | None, shard_count: int | None) -> grain.sharding.ShardOptions:
  index = jax.process_index() if shard_index is None else shard_index
  count = jax.process_count() if shard_count is None else shard_count
  if not 0 <= index < count:
    raise InputError(f'shard_index must be in [0, {count}), got {index}.')
  return grain.sharding.ShardOptions(shard_index=index, shard_count=count, drop_remainder=True)


class TrainIterator:
  """Iterator of per-host training batches whose position can be saved and restored as a JSON string."""

  def __init__(self, loader: grain.DataLoader, upgrade: Callable[[dict], str] | None = None):
    self._loader, self._upgrade = loader, upgrade
    self._it = iter(loader)
    self._closed_state: str | None = None

  def __iter__(self) -> 'TrainIterator':
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self._it is None:
      raise StopIteration
    batch = next(self._it)
    for array in batch.values():
      _unlink_shared_memory_name(array)
    return batch

  def close(self) -> None:
    """Stops grain's worker processes and unlinks the shared memory of batches they prefetched, then lets go
    of grain's iterator (freed now: left to the interpreter's exit, its `__del__` fails with an 'Exception
    ignored' traceback). `get_state` still answers; `next` raises StopIteration. Idempotent.

    grain 0.2's DataLoaderIterator has no close(); its dataset iterator has."""
    if self._it is None:
      return
    self._closed_state = self.get_state()
    close = getattr(getattr(self._it, '_iterator', None), 'close', None)
    if close is not None:
      close()
    self._it = None

  def get_state(self) -> str:
    """The position after the last batch returned (grain's JSON state, as str for the checkpoint's JSON)."""
    if self._it is None:
      return self._closed_state
    state = self._it.get_state()
    return state.decode() if isinstance(state, bytes) else json.dumps(state)

  def set_state(self, state: str) -> None:
    """Continues from a `get_state()` of an iterator built with the same arguments (also one saved by the
    per-record pipeline of earlier versions with 0 or 1 workers: `_upgrade_record_state`)."""
    try:
      parsed = json.loads(state)
    except (TypeError, ValueError):
      parsed = None
    if self._upgrade and isinstance(parsed, dict) and str(parsed.get('sampler')).startswith('_EpochSampler('):
      state = self._upgrade(parsed)
    if self._it is None:
      raise InputError('set_state on a closed training iterator: build a new one.')
    try:
      self._it.set_state(state.encode())
    except (ValueError, KeyError, TypeError) as e:  # KeyError: e.g. a `HostsIterator` state (no grain keys).
      raise InputError(f'Iterator state does not match this pipeline: {e}') from e


def _unlink_shared_memory_name(array: np.ndarray) -> None:
  """Removes the /dev/shm name of a batch array a grain worker sent, keeping the mapping (POSIX: the memory
  lives until its last mapping closes, here when the array is garbage-collected).

  Why: grain leaves the unlink to the array's `__del__`, on a background thread; batches still referenced
  when the interpreter exits (a prefetch queue, a global) were unlinked late or not at all, and
  multiprocessing's resource tracker then warned of 'leaked shared_memory objects' and removed them itself.
  Unlinked on arrival, no name outlives `__next__`, even if the process is killed. In-process arrays
  (worker_count=0) are left as they are.
  """
  shm = getattr(array, 'shm', None)
  if isinstance(array, SharedMemoryArray) and getattr(array, '_unlink_on_del', False) and shm is not None:
    shm.unlink()  # also unregisters the name from the resource tracker
    array._unlink_on_del = False  # pylint: disable=protected-access  # __del__ then only closes the mapping


def train_iterator(source: Any, *, global_batch_size: int, crop_size: int,
                   resize_smaller: int | tuple[int, int] | None, max_boxes: int, seed: int, shuffle: bool = True,
                   num_epochs: int | None = None, worker_count: int | str = 0, read_threads: int = 0,
                   shard_index: int | None = None, shard_count: int | None = None,
                   train_scales: Sequence[tuple[int, int]] = ()) -> TrainIterator:
  """Per-host training batches (docs/CONVENTIONS.md batch format), deterministic for `seed` and resumable.

  Args:
    source: a data source from `open_source` (images encoded or decoded).
    global_batch_size: batch size over all hosts; each host yields `global_batch_size // shard_count`.
    crop_size: the network's training input size (231 / 221 / 64).
    resize_smaller: smaller side before cropping (256 for ImageNet), None to keep the stored size, or a range
      (lo, hi) drawn from per example (scale jitter, `preprocess.train_crop`).
    max_boxes: boxes per example in the batch (padded; extra boxes are dropped).
    seed: shuffling and augmentation seed (0 <= seed < 2**32).
    shuffle: shuffle each epoch (a new permutation per epoch).
    num_epochs: stop after this many epochs; None repeats forever.
    worker_count: grain worker processes (0: in this process), or 'auto' (`resolve_worker_count`: the cores
      this process may use, less 2). Shard 0 logs the cores and workers at start. The batches do not depend
      on it (worker w builds batches w, w + W, ...), but grain's saved state does: a resumed run keeps it.
    read_threads: grain threads reading the records of the next batches ahead (0: on demand; on 2 busy cores,
      `Prefetcher`'s one background thread overlaps the input with the train step at less GIL contention).
    shard_index, shard_count: this host's shard; default `jax.process_index()`, `jax.process_count()`.
    train_scales: (h, w) whole-batch training sizes in turn: batch b (0-based, step b + 1; the same on every
      host, and restored with the iterator's state) is resized after the crops to `train_scales[b % n]`
      (`preprocess.scale_of_batch`, boxes scaled with it); empty: the crops as they are.
  """
  shard = _shard_options(shard_index, shard_count)
  train_scales = _check_scales(train_scales)
  resize_smaller = preprocess.check_resize_smaller(resize_smaller)
  if global_batch_size % shard.shard_count:
    raise InputError(f'global_batch_size {global_batch_size} is not divisible by {shard.shard_count} hosts.')
  if len(source) < shard.shard_count:
    raise InputError(f'{len(source)} records cannot be split over {shard.shard_count} hosts.')
  requested, worker_count = worker_count, resolve_worker_count(worker_count)
  if shard.shard_index == 0:
    logging.info('Input pipeline: %d CPU cores usable, %d grain worker processes (worker_count=%s).',
                 usable_cores(), worker_count, requested)
  if worker_count > 0:
    _mark_flags_parsed()
  batch_size = global_batch_size // shard.shard_count
  batch_source = _BatchSource(source, shard, shuffle, seed, batch_size)
  sampler = _BatchSampler(len(source), shard, shuffle, num_epochs, seed, batch_size)
  loader = grain.DataLoader(
      data_source=batch_source, sampler=sampler, worker_count=worker_count, shard_options=shard,
      operations=[grain.transforms.Batch(1, batch_fn=_TrainBatcher(seed, crop_size, resize_smaller, max_boxes,
                                                                   train_scales))],
      read_options=grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=read_threads))
  return TrainIterator(loader, functools.partial(
      _upgrade_record_state, sampler=sampler, source_repr=f'_KeyedSource({source!r})', shard=shard,
      batch_size=batch_size, current=(repr(sampler), repr(batch_source))))


def _check_scales(scales: Sequence[Any]) -> tuple[tuple[int, int], ...]:
  """`train_scales` as (h, w) positive int pairs; InputError (one line) otherwise."""
  try:
    sizes = tuple((int(s), int(s)) if np.ndim(s) == 0 else tuple(int(v) for v in s) for s in scales)
  except (TypeError, ValueError):
    sizes = None
  if sizes is None or any(len(s) != 2 or min(s) < 1 for s in sizes):
    raise InputError(f'train_scales must be positive sizes, an int or (h, w) each, got {scales!r}.')
  return sizes


def _upgrade_record_state(state: dict, *, sampler: '_BatchSampler', source_repr: str,
                          shard: grain.sharding.ShardOptions, batch_size: int, current: tuple[str, str]) -> str:
  """A grain state saved by the per-record pipeline (`_EpochSampler`, records counted; versions before
  2026-11-30) -> the same position in this one (batches counted). With 0 or 1 worker its batches were the same
  (consecutive stream positions, the same permutation and random streams), so the run continues exactly;
  with 2 or more each worker batched every W-th record, which batches cannot reproduce: InputError."""
  if state.get('sampler') != sampler.record_repr or state.get('data_source') != source_repr:
    raise InputError('Iterator state does not match this pipeline: it was saved by the per-record pipeline '
                     f'with other arguments ({state.get("sampler")}).')
  workers, seen = state.get('worker_count'), state.get('last_seen_indices') or {}
  if workers not in (0, 1) or set(seen) != {'0'}:
    raise InputError(f'Iterator state was saved by the per-record pipeline of an earlier version with {workers} '
                     'worker processes, whose batches mixed every worker\'s records; it cannot be continued '
                     'exactly: resume with that version, or with 0 or 1 worker there.')
  step = max(workers, 1) * shard.shard_count  # grain's stride between one worker's records
  records = (int(seen['0']) - shard.shard_index + step) // step
  if records % batch_size:
    raise InputError(f'Iterator state does not match this pipeline: {records} records read is not a whole '
                     f'number of batches of {batch_size}.')
  position = shard.shard_index - step + records // batch_size * step
  return json.dumps(dict(state, last_seen_indices={'0': position}, sampler=current[0], data_source=current[1]))


class HostsIterator:
  """The global batches of an N-host run, read in one process: N shard iterators' batches, concatenated.

  Why: `make_array_from_process_local_data` puts host p's rows at positions p*B/N.. of the global batch, so
  concatenating shard 0..N-1's per-host batches gives exactly the global batch an N-host run trains on, and a
  one-process run reproduces it (e.g. to debug a pod run on a laptop). The state covers every shard.
  """

  def __init__(self, iterators: Sequence[TrainIterator]):
    if not iterators:
      raise InputError('HostsIterator needs at least one shard iterator.')
    self._iterators = list(iterators)

  def __iter__(self) -> 'HostsIterator':
    return self

  def close(self) -> None:
    for it in self._iterators:
      it.close()

  def __next__(self) -> dict[str, np.ndarray]:
    batches = [next(it) for it in self._iterators]  # Every shard has as many batches: StopIteration at once.
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}

  def get_state(self) -> str:
    """Every shard's position, as one JSON string (the checkpoint stores it like a `TrainIterator` state)."""
    return json.dumps({'read_as_hosts': len(self._iterators),
                       'shards': [it.get_state() for it in self._iterators]})

  def set_state(self, state: str) -> None:
    """Continues from a `get_state()` of a `HostsIterator` built with the same arguments and host count."""
    try:
      parsed = json.loads(state)
    except (TypeError, ValueError):
      parsed = None
    shards = parsed.get('shards') if isinstance(parsed, dict) else None
    if not isinstance(shards, list) or len(shards) != len(self._iterators):
      found = f'{len(shards)} hosts' if isinstance(shards, list) else 'a one-host iterator state'
      raise InputError(f'Iterator state does not match this pipeline: it was saved reading as {found}, this '
                       f'run reads as {len(self._iterators)} hosts (keep data.read_as_hosts unchanged).')
    for it, shard_state in zip(self._iterators, shards):
      it.set_state(shard_state)


def hosts_train_iterator(source: Any, *, num_hosts: int, **kwargs: Any) -> HostsIterator:
  """The global batches of a `num_hosts`-host run in one process: `train_iterator` with shard_count=num_hosts
  for every shard, concatenated in shard order (`HostsIterator`). `kwargs`: those of `train_iterator`."""
  if not isinstance(num_hosts, int) or isinstance(num_hosts, bool) or num_hosts < 1:
    raise InputError(f'num_hosts must be a positive integer, got {num_hosts!r}.')
  if 'shard_index' in kwargs or 'shard_count' in kwargs:
    raise InputError('hosts_train_iterator reads every shard; do not pass shard_index or shard_count.')
  return HostsIterator([train_iterator(source, shard_index=i, shard_count=num_hosts, **kwargs)
                        for i in range(num_hosts)])


# Cores `worker_count='auto'` leaves to the training process: its loop and jax dispatch, and the Prefetcher
# thread that turns batches into device arrays.
AUTO_RESERVED_CORES = 2


def usable_cores() -> int:
  """CPU cores this process may run on: `os.sched_getaffinity` (what taskset, cpusets and SLURM's
  --cpus-per-task allow), else `os.cpu_count()` (where the affinity call is missing, e.g. macOS)."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # pragma: no cover - not on Linux
    return os.cpu_count() or 1


def resolve_worker_count(value: int | str, cores: int | None = None) -> int:
  """`data.worker_count` as a number of grain worker processes.

  Args:
    value: an integer >= 0 (a string of digits too: command-line overrides of a string field), or 'auto':
      `cores - AUTO_RESERVED_CORES` when the process may use more than `AUTO_RESERVED_CORES + 1` cores, else 0
      (in process: on 2 cores a worker only adds inter-process copies, measured in docs/data_pipeline.md).
    cores: the cores to count on; default `usable_cores()`.

  Raises:
    InputError for anything else.
  """
  if isinstance(value, str) and value.strip().lower() == 'auto':
    cores = usable_cores() if cores is None else cores
    return cores - AUTO_RESERVED_CORES if cores > AUTO_RESERVED_CORES + 1 else 0
  if isinstance(value, str) and value.strip().isdigit():
    return int(value)
  if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
    return value
  raise InputError(f"data.worker_count must be an integer >= 0 or 'auto', got {value!r}.")


def _mark_flags_parsed() -> None:
  """grain's worker processes read absl flags, unparsed outside `absl.app.run` (ENV_NOTES section 6)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def eval_iterator(source: Any, *, batch_size: int, view: str = 'center_crop', size: int | tuple[int, int],
                  max_boxes: int, shard_index: int | None = None,
                  shard_count: int | None = None) -> Iterator[dict[str, np.ndarray]]:
  """Every record of this host's shard exactly once, in order, in batches with a `mask` (1 real, 0 padding).

  The records are split into `shard_count` contiguous parts (default: one per jax process); every host yields
  the same number of batches (the longest shard's), padding with masked copies of a real example, so that
  global batches line up and a masked mean over all hosts is exact.

  Args:
    source: a data source from `open_source`.
    batch_size: examples per host batch.
    view: 'center_crop' (size: int) or 'resize' (size: int or (h, w)).
    size: see `view`.
    max_boxes: boxes per example (padded with zeros / -1).
    shard_index, shard_count: this host's shard; default `jax.process_index()`, `jax.process_count()`.
  """
  shard = _shard_options(shard_index, shard_count)
  n, count = len(source), shard.shard_count
  bounds = [i * n // count for i in range(count + 1)]
  start, stop = bounds[shard.shard_index], bounds[shard.shard_index + 1]
  longest = max(b - a for a, b in zip(bounds, bounds[1:]))
  num_batches = -(-longest // batch_size)
  preprocess.eval_example(source[0], view=view, size=size, max_boxes=max_boxes)  # Fail early on a bad view.

  def batches() -> Iterator[dict[str, np.ndarray]]:
    for b in range(num_batches):
      keys = range(start + b * batch_size, min(start + (b + 1) * batch_size, stop))
      examples = [preprocess.eval_example(source[k], view=view, size=size, max_boxes=max_boxes) for k in keys]
      mask = np.zeros((batch_size,), np.int32)
      mask[:len(examples)] = 1
      filler = examples[0] if examples else preprocess.eval_example(source[0], view=view, size=size,
                                                                    max_boxes=max_boxes)
      examples += [filler] * (batch_size - len(examples))
      batch = {k: np.stack([ex[k] for ex in examples]) for k in examples[0]}
      batch['mask'] = mask
      yield batch

  return batches()


def to_global(batch: dict[str, np.ndarray], sharding: jax.sharding.Sharding) -> dict[str, jax.Array]:
  """Host batch -> global `jax.Array`s, each host contributing its rows (leading axis split by `sharding`)."""
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


class Prefetcher:
  """Keeps `size` batches ready (converted by `transform`, e.g. `to_global`) in a background thread.

  `get_state()` is the state after the last batch *returned to the caller*, not after the last one prefetched,
  so a checkpoint taken between steps resumes exactly at the next unconsumed batch.
  """

  def __init__(self, iterator: TrainIterator, transform: Callable[[dict], Any] = lambda b: b, size: int = 2):
    self._iterator = iterator
    self._state = iterator.get_state()
    self._queue: queue.Queue = queue.Queue(maxsize=size)
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._fill, args=(transform,), daemon=True)
    self._thread.start()

  def _fill(self, transform: Callable[[dict], Any]) -> None:
    try:
      for batch in self._iterator:
        if not self._put((transform(batch), self._iterator.get_state())):
          return
      self._put((StopIteration, None))
    except Exception as e:  # pylint: disable=broad-except
      self._put((e, None))  # Re-raised in the consumer's thread.

  def _put(self, item: tuple[Any, Any]) -> bool:
    """Queues `item`, waiting while the queue is full; False (item dropped) once `close` has been called."""
    while not self._stop.is_set():
      try:
        self._queue.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def __iter__(self) -> 'Prefetcher':
    return self

  def __next__(self) -> Any:
    item, state = self._queue.get()
    if item is StopIteration:
      self._queue.put((StopIteration, None))
      raise StopIteration
    if isinstance(item, Exception):
      raise item
    self._state = state
    return item

  def get_state(self) -> str:
    return self._state

  def close(self) -> None:
    """Stops the background thread, closes the iterator (its grain workers and their shared memory,
    `TrainIterator.close`) and drops the prefetched batches; `next` then raises StopIteration. Idempotent.

    The thread stops at its next queue put; one still waiting for a batch from a grain worker after 5 s is
    stopped by closing the iterator under it (grain then raises in it, and the error is dropped here)."""
    self._stop.set()
    self._thread.join(timeout=5)
    if hasattr(self._iterator, 'close'):
      self._iterator.close()
    self._thread.join(timeout=30)
    while True:
      try:
        self._queue.get_nowait()
      except queue.Empty:
        break
    self._queue.put_nowait((StopIteration, None))  # a later next() ends the iteration instead of waiting
