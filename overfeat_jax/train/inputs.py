"""The loop's view of the input pipeline (`data.pipeline`): config values in, resumable iterators out."""

from typing import Any, Iterator

import jax
import ml_collections

from overfeat_jax.data import pipeline


def open_split(config: ml_collections.ConfigDict, split: str) -> Any:
  """The tfds source of `split` of `config.data` (the embedded dataset is built on first use)."""
  return pipeline.open_source(config.data.name, split, data_dir=config.data.data_dir,
                              **dict(config.data.options))


def train_iterator(config: ml_collections.ConfigDict, source: Any) -> pipeline.TrainIterator:
  """Per-host training batches: random crops of `crop_size` (and flips), seeded by `config.seed`."""
  return pipeline.train_iterator(
      source, global_batch_size=config.batch_size, crop_size=config.crop_size,
      resize_smaller=config.resize_smaller or None, max_boxes=config.max_boxes, seed=config.seed,
      worker_count=config.data.worker_count)


def eval_batches(config: ml_collections.ConfigDict, source: Any, view: str,
                 size: int) -> tuple[Iterator[dict], int, int]:
  """(per-host eval batches with `mask`, number of batches, per-host batch size) for one evaluation view."""
  per_host = config.eval.batch_size // jax.process_count()
  longest = -(-len(source) // jax.process_count())
  batches = pipeline.eval_iterator(source, batch_size=per_host, view=view, size=size,
                                   max_boxes=config.max_boxes)
  return batches, -(-longest // per_host), config.eval.batch_size
