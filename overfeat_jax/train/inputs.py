"""The loop's view of the input pipeline (`data.pipeline`): config values in, resumable iterators out."""

from typing import Any, Iterator

import jax

from overfeat_jax.data import pipeline
from overfeat_jax.errors import InputError

Config = Any  # the stage's ml_collections.ConfigDict, which only the loop and the entry points import


def open_split(config: Config, split: str) -> Any:
  """The tfds source of `split` of `config.data` (the embedded dataset is built on first use)."""
  return pipeline.open_source(config.data.name, split, data_dir=config.data.data_dir,
                              **dict(config.data.options))


def stage_data_names(config: Config) -> list[str]:
  """The dataset of each stage of `config.stages` (a stage's own `data.name`, else the top-level one)."""
  names = []
  for stage in config.stages:
    section = config.get(stage)
    own = section.get('data', {}).get('name') if hasattr(section, 'get') else None
    names.append(own or config.data.name)
  return names


def with_classes_from_data(config: Config) -> Config:
  """`config` itself, or with `num_classes = 0` replaced by the class count of its own-data datasets.

  Own data (docs/own_data.md) has as many classes as its builder found; every own-data dataset the stages read
  must agree (the detection stage extends the classifier's outputs). Raises InputError otherwise, or when
  no stage reads own data.
  """
  if config.num_classes != 0:
    return config
  from overfeat_jax.data import folders  # pylint: disable=g-import-not-at-top
  counts = {n: len(folders.class_names(folders.dataset_dir(config.data.data_dir, n)))
            for n in stage_data_names(config) if n.split('/')[0] in pipeline.OWN_DATA}
  if not counts:
    raise InputError('num_classes = 0 (from the data) needs a stage that reads own data (voc_folder/NAME, '
                     'coco_json/NAME, image_folder/NAME)')
  if len(set(counts.values())) > 1:
    raise InputError(f'the stages\' datasets have different class counts: {counts}')
  resolved = config.copy_and_resolve_references()  # a new ConfigDict, locked like `config`
  resolved.num_classes = next(iter(counts.values()))
  return resolved


def train_iterator(config: Config,
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


def train_resize(config: Config) -> int | tuple[int, int] | None:
  """The smaller side before cropping: the `scale_jitter` range (lo, hi) when set, else `resize_smaller`."""
  jitter = tuple(config.get('scale_jitter', ()))
  return jitter if jitter else (config.resize_smaller or None)


def read_as_hosts(config: Config) -> int:
  """`config.data.read_as_hosts`, checked: 0 (off) or N > 0 in a one-process run (configs without it: 0)."""
  hosts = config.data.get('read_as_hosts', 0)
  if not isinstance(hosts, int) or isinstance(hosts, bool) or hosts < 0:
    raise InputError(f'data.read_as_hosts must be an integer >= 0 (0: off), got {hosts!r}.')
  if hosts > 0 and jax.process_count() > 1:
    raise InputError(f'data.read_as_hosts={hosts} only applies to a one-process run, but this run has '
                     f'{jax.process_count()} processes; set it to 0 (each process then reads its own shard).')
  return hosts


def eval_batches(config: Config, source: Any, view: str,
                 size: int) -> tuple[Iterator[dict], int, int]:
  """(per-host eval batches with `mask`, number of batches, per-host batch size) for one evaluation view."""
  per_host = config.eval.batch_size // jax.process_count()
  longest = -(-len(source) // jax.process_count())
  batches = pipeline.eval_iterator(source, batch_size=per_host, view=view, size=size,
                                   max_boxes=config.max_boxes)
  return batches, -(-longest // per_host), config.eval.batch_size
