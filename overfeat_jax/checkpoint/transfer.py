"""Starting a training stage from trained weights (`config.init`): a workdir, an export artifact or a release file.

Why: a few hundred labelled photos do not train layers 1-5 from scratch; the features of a network trained on
ImageNet (the 2013 release's weights), on the embedded data, or on the user's own classes do most of the work.

  source   a training workdir: its `init.stage` stage's checkpoint (latest, a given step, or the best by a
           saved validation metric), read with orbax; an export artifact directory (`checkpoint.export`,
           safetensors or the old npz); or a file in the release's raw layout (`models.release_weights`:
           `net_weight_0` = fast, `net_weight_1` = accurate, 1000 classes), read as the configured network.
  layers   'features' = the feature extractor (`features/conv*`: layers 1-5 of fast and small, 1-6 of
           accurate); 'hidden' = those and the classifier's hidden layers
           (fc6, fc7: everything but the output layer, so the class count may differ); 'all' = every layer of
           the classifier (the class counts must match). A box regressor is never transferred.
  freeze   True: the loaded layers get no updates (the optimizer's `trainable_mask`, optax.set_to_zero through
           multi_transform, `train.optim`), bit for bit; False: they are fine-tuned with the rest.

Input normalisation needs no option: every network normalises its 0..255 input inside (layer 0, the geometry's
mean and standard deviation, which are the release's, spec section 2), so release weights see their inputs
exactly as the release's own program feeds them.

Everything is checked before any training: a missing source, a workdir without that stage's checkpoint, a
release file of the wrong size, or a layer whose shape differs (named, with both shapes) raises `InputError`,
which the command line prints as one line with exit status 2.
"""

import dataclasses
import os
from typing import Any

import jax
import numpy as np
from absl import logging
from etils import epath
from flax import traverse_util

from overfeat_jax.checkpoint import export
from overfeat_jax.errors import InputError
from overfeat_jax.models import release_weights
from overfeat_jax.models.geometry import Geometry

LAYERS = ('features', 'hidden', 'all')
Key = tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Source:
  """Trained classifier weights to start from.

  Attributes:
    params: {'features': {conv1..}, 'classifier': {fc6..}} as float32 numpy arrays (Flax layout).
    description: what was read, for the log and for error messages (e.g. 'artifact /x (classification)').
  """
  params: Any
  description: str


def load_source(path: str, *, geometry: Geometry, stage: str = 'classification', step: int = -1,
                best: bool = False, metric: str = 'center_crop/top1_error') -> Source:
  """Reads the weights at `path` (a workdir, an artifact directory or a release file; see the module docstring).

  Args:
    geometry: the configured network, the layout a release file is read in.
    stage, step, best, metric: a workdir's stage, and its checkpoint: `step` (-1 = the latest), or with `best`
      the one whose saved `metric` is lowest.

  Raises:
    InputError: nothing at `path`, no such checkpoint, a corrupt artifact, or a release file of another size.
  """
  if not path or not epath.Path(path).exists():
    raise InputError(f'init.source {path!r} does not exist (give a training workdir, an export artifact '
                     'directory or a release weight file).')
  if epath.Path(path).is_file():  # the release layout is read through np.memmap: a local file
    return Source(_release_params(path, geometry), f'release weight file {path} ({geometry.name})')
  if export.is_artifact(path):
    config, _, params = export.read_artifact(path)
    return Source(params.get('backbone', params), f'artifact {path} ({config.get("stage")})')
  chosen = best_step(path, stage, metric) if best else (None if step < 0 else step)
  step, params = export.load_trained(path, stage, chosen)
  return Source(params.get('backbone', params), f'workdir {path} ({stage} step {step})')


def _release_params(path: str, geometry: Geometry) -> Any:
  """A release-layout file read as `geometry` (1000 classes); another release network's file is named."""
  size = os.path.getsize(path)
  for network, (file_name, other) in release_weights.RELEASE_FILES.items():
    if other.name != geometry.name and size == release_weights.expected_bytes(other):
      raise InputError(f'init.source {path} is the {network} release file ({file_name}) but the configured '
                       f'network is {geometry.name}: set --config.model.geometry={network} '
                       '--config.model.width_divisor=1.')
  return release_weights.load_release_weights(path, geometry)


def best_step(workdir: str, stage: str, metric: str) -> int:
  """The step of `stage`'s checkpoints in `workdir` whose saved `metric` is lowest (orbax keeps the best one)."""
  from overfeat_jax.checkpoint import manager as ckpt  # pylint: disable=g-import-not-at-top  (orbax)
  manager = ckpt.make_manager(export.checkpoint_dir(workdir, stage), enable_async=False)
  try:
    scores = {s: (manager.metrics(s) or {}).get(metric) for s in manager.all_steps()}
  finally:
    manager.close()
  scores = {s: v for s, v in scores.items() if v is not None}
  if not scores:
    raise InputError(f'init.best: no {stage} checkpoint in {workdir} has a saved {metric!r}; use init.step.')
  return min(scores, key=lambda s: (scores[s], -s))


def pick(params: Any, layers: str) -> dict[Key, np.ndarray]:
  """The source leaves `layers` selects, by tree path ('features', 'conv1', 'kernel')."""
  if layers not in LAYERS:
    raise InputError(f'init.layers must be one of {LAYERS}, got {layers!r}.')
  output = sorted(params.get('classifier', {}), key=lambda n: int(n[2:]))[-1:]  # fc8 (fc6 < fc7 < fc8)
  keep = {'features': lambda k: k[0] == 'features',
          'hidden': lambda k: k[0] == 'features' or (k[0] == 'classifier' and k[1] not in output),
          'all': lambda k: k[0] in ('features', 'classifier')}[layers]
  return {k: np.asarray(v) for k, v in traverse_util.flatten_dict(params).items() if keep(k)}


def check_fits(shapes: Any, picked: dict[Key, np.ndarray], description: str) -> None:
  """Raises `InputError` naming the first layer of `picked` that the target tree `shapes` lacks or shapes else."""
  target = traverse_util.flatten_dict(shapes)
  output = max((k[-2] for k in target if k[-3] == 'classifier'), key=lambda n: int(n[2:]), default=None)
  extra = sorted(picked.keys() - target.keys())
  if extra:
    raise InputError(f'init.source {description} has layer {"/".join(extra[0])}, which the configured network '
                     'lacks (config.model.geometry must match the source).')
  layer_order = {k[:-1]: i for i, k in reversed(list(enumerate(target)))}  # the network's order: conv1 first
  for key in sorted(picked, key=lambda k: (layer_order[k[:-1]], k[-1] != 'kernel')):  # a layer's kernel first
    value, name = picked[key], '/'.join(k for k in key if k != 'backbone')
    if tuple(target[key].shape) != value.shape:
      hint = (" (the class counts differ: init.layers='hidden' starts the output layer afresh)"
              if key[-2] == output else ' (config.model.geometry / width_divisor must match the source)')
      raise InputError(f'init.source {description}: layer {name} has shape {value.shape} there but '
                       f'{tuple(target[key].shape)} in the configured network{hint}.')


def initialise(task: Any, source: Source, *, layers: str = 'features', freeze: bool = False) -> Any:
  """`task` (a `tasks.task.Task`) whose `warm_start` copies the selected layers of `source` over its own
  initialisation (after the task's own warm start, if any) and whose `trainable_mask` also marks them frozen
  when `freeze`. The copy runs outside jit (`train.programs`), so the weights are never compiled into the init
  as constants; it yields numpy leaves for the loaded layers. Shapes are checked here, once, so a mismatch
  stops the run before any data is read."""
  shapes = jax.eval_shape(task.init_params, jax.random.key(0))
  prefix = ('backbone',) if 'backbone' in shapes else ()  # localization / detection trees
  picked = {prefix + k: v for k, v in pick(source.params, layers).items()}
  check_fits(shapes, picked, source.description)
  logging.info('%s: %s from %s, %s.', task.name, layers, source.description, 'frozen' if freeze else 'fine-tuned')

  def warm_start(params: Any) -> Any:
    flat = traverse_util.flatten_dict(params if task.warm_start is None else task.warm_start(params))
    flat.update(picked)
    return traverse_util.unflatten_dict(flat)

  def trainable_mask(params: Any) -> Any:
    flat = traverse_util.flatten_dict(task.trainable_mask(params))
    if freeze:
      flat.update({k: False for k in picked})
    return traverse_util.unflatten_dict(flat)

  return dataclasses.replace(task, warm_start=warm_start, trainable_mask=trainable_mask)
