"""The loop's view of the input pipeline (`data.pipeline`): config values in, resumable iterators out."""

from typing import Any, Iterator

import jax
import ml_collections

from overfeat_jax.data import pipeline
from overfeat_jax.errors import InputError


def open_split(config: ml_collections.ConfigDict, split: str) -> Any:
  """The tfds source of `split` of `config.data` (the embedded dataset is built on first use)."""
  return pipeline.open_source(config.data.name, split, data_dir=config.data.data_dir,
                              **dict(config.data.options))


def train_iterator(config: ml_collections.ConfigDict,
                   source: Any) -> pipeline.TrainIterator | pipeline.HostsIterator:
  """Per-host training batches: random crops of `crop_size` (and flips), seeded by `config.seed`.

  With `config.data.read_as_hosts = N > 0` (one process only) the batches are the global batches of an N-host
  run (`pipeline.HostsIterator`), so a one-process run reproduces an N-host run exactly.
  """
  kwargs = dict(global_batch_size=config.batch_size, crop_size=config.crop_size,
                resize_smaller=train_resize(config), max_boxes=config.max_boxes, seed=config.seed,
                worker_count=config.data.worker_count)
  hosts = read_as_hosts(config)
  if hosts == 0:
    return pipeline.train_iterator(source, **kwargs)
  return pipeline.hosts_train_iterator(source, num_hosts=hosts, **kwargs)


def train_resize(config: ml_collections.ConfigDict) -> int | tuple[int, int] | None:
  """The smaller side before cropping: the `scale_jitter` range (lo, hi) when set, else `resize_smaller`."""
  jitter = tuple(config.get('scale_jitter', ()))
  return jitter if jitter else (config.resize_smaller or None)


def read_as_hosts(config: ml_collections.ConfigDict) -> int:
  """`config.data.read_as_hosts`, checked: 0 (off) or N > 0 in a one-process run (configs without it: 0)."""
  hosts = config.data.get('read_as_hosts', 0)
  if not isinstance(hosts, int) or isinstance(hosts, bool) or hosts < 0:
    raise InputError(f'data.read_as_hosts must be an integer >= 0 (0: off), got {hosts!r}.')
  if hosts > 0 and jax.process_count() > 1:
    raise InputError(f'data.read_as_hosts={hosts} only applies to a one-process run, but this run has '
                     f'{jax.process_count()} processes; set it to 0 (each process then reads its own shard).')
  return hosts


def eval_batches(config: ml_collections.ConfigDict, source: Any, view: str,
                 size: int) -> tuple[Iterator[dict], int, int]:
  """(per-host eval batches with `mask`, number of batches, per-host batch size) for one evaluation view."""
  per_host = config.eval.batch_size // jax.process_count()
  longest = -(-len(source) // jax.process_count())
  batches = pipeline.eval_iterator(source, batch_size=per_host, view=view, size=size,
                                   max_boxes=config.max_boxes)
  return batches, -(-longest // per_host), config.eval.batch_size
