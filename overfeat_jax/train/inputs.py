"""The loop's view of the input pipeline (`data.pipeline`): typed input settings in, resumable iterators out.

The settings (`settings.InputSettings`) are read from the stage's config once, by the loop
(`config_files.input_settings`); nothing here reads a config.
"""

from typing import Any, Iterator

import jax

from overfeat_jax.data import pipeline
from overfeat_jax.errors import InputError
from overfeat_jax.settings import InputSettings


def open_split(data: InputSettings, split: str) -> Any:
  """The tfds source of `split` of `data.dataset` (the embedded dataset is built on first use)."""
  return pipeline.open_source(data.dataset, split, data_dir=data.data_dir, **dict(data.options))


def train_iterator(data: InputSettings, source: Any) -> pipeline.TrainIterator | pipeline.HostsIterator:
  """Per-host training batches: random crops of `data.crop_size` pixels (and flips), seeded by `data.seed`,
  each whole batch then at its step's `data.train_scales` size when given (`pipeline.train_iterator`).

  With `data.read_as_hosts = N > 0` (one process only) the batches are the global batches of an N-host run
  (`pipeline.HostsIterator`), so a one-process run reproduces an N-host run exactly.

  Raises:
    InputError: a bad `read_as_hosts`, scale-jitter range or worker count (one line each).
  """
  kwargs = dict(global_batch_size=data.batch_size, crop_size=data.crop_size, resize_smaller=data.train_resize,
                max_boxes=data.max_boxes, seed=data.seed, worker_count=data.worker_count,
                train_scales=data.train_scales)
  hosts = read_as_hosts(data)
  if hosts == 0:
    return pipeline.train_iterator(source, **kwargs)
  return pipeline.hosts_train_iterator(source, num_hosts=hosts, **kwargs)


def check(data: InputSettings) -> None:
  """The input settings that would otherwise fail only when the stage opens its iterator (after its workdir and
  checkpoints exist and its programs compiled), checked up front: `worker_count`, `read_as_hosts`.

  Raises:
    InputError: one line naming the field.
  """
  pipeline.resolve_worker_count(data.worker_count)
  read_as_hosts(data)


def read_as_hosts(data: InputSettings) -> int:
  """`data.read_as_hosts`, checked: 0 (off) or N > 0 in a one-process run; InputError otherwise."""
  hosts = data.read_as_hosts
  if not isinstance(hosts, int) or isinstance(hosts, bool) or hosts < 0:
    raise InputError(f'data.read_as_hosts must be an integer >= 0 (0: off), got {hosts!r}.')
  if hosts > 0 and jax.process_count() > 1:
    raise InputError(f'data.read_as_hosts={hosts} only applies to a one-process run, but this run has '
                     f'{jax.process_count()} processes; set it to 0 (each process then reads its own shard).')
  return hosts


def eval_batches(data: InputSettings, source: Any, view: str,
                 size: int | tuple[int, int]) -> tuple[Iterator[dict], int, int]:
  """(per-host eval batches with `mask`, number of batches, global batch size) for one evaluation view of
  `size` pixels."""
  per_host = data.eval_batch_size // jax.process_count()
  longest = -(-len(source) // jax.process_count())
  batches = pipeline.eval_iterator(source, batch_size=per_host, view=view, size=size, max_boxes=data.max_boxes)
  return batches, -(-longest // per_host), data.eval_batch_size
