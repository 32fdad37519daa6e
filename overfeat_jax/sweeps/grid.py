"""Sweep definitions -> the list of evaluation points to run.

Why configs: a user adds a point (or a value on an axis) by editing a config file
(`experiments/configs/sweeps/*.py`, ml_collections), without code. The entry point (`overfeat_jax.sweep`) reads
it once into a frozen `Sweep` (`Sweep.from_dict(config.to_dict())`); nothing here imports ml_collections. A sweep
has:
  task         'classification', 'localization' or 'detection'.
  train_config the training config (a config module path such as 'overfeat_jax.configs.embedded', or a .py
               file path, optionally ':arg'; '' = the workdir's config.json) whose data, crop size, evaluation
               view and scales the sweep uses; `scales` below index into its scale list.
  data_name, eval_size, scales, max_boxes  overrides of the training config's ('' / 0 / () = keep).
  data_from    'workdir' (default): the data (name, split, data_dir, options, max_boxes) of the `--workdir`'s
               training config (config.json), the data its network was trained and evaluated on, when it has
               one (an exported artifact's config.json names no data: then the training config's);
               'train_config': the training config's.
  box          detection: score_threshold, max_per_scale, max_detections.
  defaults     every `Point` field's default value.
  grid         axes (field -> tuple of values): the cartesian product of all axes is swept.
  points       named extra points (name -> field overrides), e.g. the paper's 10-view row or an ensemble.
  max_examples evaluate only the first N examples (0: all); batch_size: images per evaluation call.

`models` selects networks among the checkpoints given to the sweep: 'first', 'each' (one point per network:
fast vs accurate, or several seeds) or 'ensemble' (all of them, their class probabilities averaged, as the
paper's 7-model rows).
"""

import dataclasses
import hashlib
import itertools
import json
from typing import Any, Mapping

from overfeat_jax.errors import InputError
from overfeat_jax.settings import TASK_NAMES

VIEWS = ('dense', 'ten_crop', 'center_crop')  # dense: multi-scale, offset pooling optional; crops: training size
MODEL_CHOICES = ('first', 'each', 'ensemble')
MERGES = ('overlap', 'literal', 'nms')
DATA_FROM = ('workdir', 'train_config')
AVERAGES = ('pair', 'score')  # `inference.merge.AVERAGES`, kept here so that configs expand without jax
DEFAULT_AVERAGE = 'pair'


@dataclasses.dataclass(frozen=True)
class Point:
  """One evaluation of a sweep (one row of the table).

  Attributes:
    name: row label given in the config ('' for grid points: the label is generated).
    models: indices of the networks evaluated together (several = an ensemble).
    view: 'dense' (whole image at `num_scales` scales), 'ten_crop' (4 corners + centre at the training size,
      and their mirrors if `flips`) or 'center_crop'.
    num_scales: the first N scales of the training config's list (dense view only).
    fine: offset pooling (fine stride) or not (coarse stride); dense view only.
    flips: also evaluate the mirror image.
    merge, top_k, threshold: localization/detection only: the box merge ('overlap' or 'literal' greedy merge,
      or 'nms'), classes kept per scale (localization), merge threshold t or NMS IoU.
    average: greedy merge only: a merged pair's box is their mean ('pair', the paper) or their
      confidence-weighted mean ('score'); see `inference.merge`.
  """
  name: str = ''
  models: tuple[int, ...] = (0,)
  view: str = 'dense'
  num_scales: int = 1
  fine: bool = True
  flips: bool = True
  merge: str = 'overlap'
  top_k: int = 2
  threshold: float = 0.8
  average: str = DEFAULT_AVERAGE

  def key(self, model_ids: tuple[str, ...] = (), context: str = '') -> str:
    """A stable file name: readable fields + a hash of everything that changes the result.

    `model_ids` identify the networks (checkpoint path and step), `context` the evaluation setup (data, scales).
    The default `average` is left out of the hash, so results saved before the field existed are reused.
    """
    fields = {**dataclasses.asdict(self), 'models': [model_ids[i] if model_ids else i for i in self.models],
              'context': context}
    fields.pop('name')
    if fields['average'] == DEFAULT_AVERAGE:
      fields.pop('average')
    digest = hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
    return f'{self.view}-m{"+".join(map(str, self.models))}-s{self.num_scales}-{digest}'


FIELDS = {f.name for f in dataclasses.fields(Point)}


def _normalise(fields: dict[str, Any], task: str) -> dict[str, Any]:
  """Fields that do not apply to a point get fixed values, so equivalent points are one point."""
  if fields['view'] != 'dense':
    fields.update(num_scales=0, fine=False)
  if task == 'classification':
    fields.update(merge='', top_k=0, threshold=0.0)
  else:  # box inference has no flip averaging
    fields.update(flips=False, top_k=0 if task == 'detection' else fields['top_k'])
  if task == 'classification' or fields['merge'] == 'nms':  # no greedy merge, nothing to average
    fields.update(average=DEFAULT_AVERAGE)
  return fields


def _check(fields: dict[str, Any], task: str, num_scales: int, where: str, scale_list: str) -> None:
  """Raises an InputError naming the point (`where`) for a field or value it does not know; `scale_list` says
  whose scale list `num_scales` indexes (the sweep's `scales` or the training config's)."""
  unknown = set(fields) - FIELDS - {'models'}
  if unknown:
    raise InputError(f'{where}: unknown field(s) {sorted(unknown)}; valid: {sorted(FIELDS)}.')
  if fields['view'] not in VIEWS:
    raise InputError(f'{where}: view must be one of {VIEWS}, got {fields["view"]!r}.')
  if fields['models'] not in MODEL_CHOICES:
    raise InputError(f'{where}: models must be one of {MODEL_CHOICES}, got {fields["models"]!r}.')
  for name in ('fine', 'flips'):  # 1, 2 or 'yes' would be read as true (or compared as numbers) without a word
    if not isinstance(fields[name], bool):
      raise InputError(f'{where}: {name} must be True or False, got {fields[name]!r}.')
  if fields['view'] == 'dense' and not 1 <= int(fields['num_scales']) <= num_scales:
    raise InputError(f'{where}: num_scales must be in 1..{num_scales} ({scale_list}).')
  if task != 'classification' and (fields['view'] != 'dense' or fields['merge'] not in MERGES):
    raise InputError(f'{where}: {task} points use the dense view and a merge in {MERGES}.')
  if fields['average'] not in AVERAGES:
    raise InputError(f'{where}: average must be one of {AVERAGES}, got {fields["average"]!r}.')


def _resolve(fields: dict[str, Any], num_models: int) -> list[dict[str, Any]]:
  """models 'first' / 'each' / 'ensemble' -> concrete index tuples (an ensemble of one network is dropped)."""
  choice = fields['models']
  if choice == 'first':
    groups = [(0,)]
  elif choice == 'each':
    groups = [(i,) for i in range(num_models)]
  else:
    groups = [tuple(range(num_models))] if num_models > 1 else []
  return [{**fields, 'models': g} for g in groups]


def expand(sweep: 'Sweep', num_models: int, num_scales: int) -> list[Point]:
  """Every point of the sweep, in order (grid first, then named points), duplicates removed.

  Args:
    sweep: the sweep definition (module docstring).
    num_models: how many networks (checkpoints) the sweep was given.
    num_scales: length of the evaluation's scale list: the sweep's `scales`, or the training config's when the
      sweep has none.

  Raises:
    InputError: an unknown field or value in `defaults`, `grid` or `points` (`fine` and `flips` must be
      booleans), or a dense point's num_scales outside 1..num_scales; one line naming the point (a named point
      by its name, a grid point by its axis values, e.g. `grid point (fine=False, num_scales=10)`).
  """
  task = sweep.task
  defaults = {f.name: f.default for f in dataclasses.fields(Point)}
  defaults.update({'models': 'first', **sweep.defaults})
  axes = {name: tuple(values) for name, values in sweep.grid.items()}
  combos = [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]
  raw = [(f'grid point ({", ".join(f"{k}={v!r}" for k, v in combo.items())})', {**defaults, **combo})
         for combo in combos]
  raw += [(f'point {name!r}', {**defaults, 'name': name, **overrides}) for name, overrides in sweep.points.items()]
  plural = 's' if num_scales != 1 else ''
  scale_list = (f'the sweep\'s scales {tuple(sweep.scales)} have {num_scales} scale{plural}' if sweep.scales else
                f'the training config\'s scale list has {num_scales} scale{plural}')
  points, seen = [], set()
  for where, fields in raw:
    _check(fields, task, num_scales, where, scale_list)
    for concrete in _resolve(fields, num_models):
      fields = _normalise(concrete, task)
      point = Point(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in fields.items()})
      identity = dataclasses.replace(point, name='')
      if identity not in seen:
        seen.add(identity)
        points.append(point)
  return points


@dataclasses.dataclass(frozen=True)
class Sweep:
  """A sweep definition as plain values (module docstring): what `overfeat_jax.sweep` reads from the config file.

  `defaults`, `grid` and `points` are plain dicts (field -> value, field -> tuple of values, name -> overrides);
  `box` holds the detection options (`score_threshold`, `max_per_scale`, `max_detections`).
  """
  task: str
  train_config: str = ''
  data_from: str = 'workdir'
  data_name: str = ''
  eval_size: int = 0
  scales: tuple[Any, ...] = ()
  max_boxes: int = 0
  batch_size: int = 32
  max_examples: int = 0
  box: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  grid: Mapping[str, tuple[Any, ...]] = dataclasses.field(default_factory=dict)
  points: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if self.task not in TASK_NAMES:
      raise InputError(f'sweep task must be one of {TASK_NAMES}, got {self.task!r}.')
    if self.data_from not in DATA_FROM:
      raise InputError(f'sweep data_from must be one of {DATA_FROM}, got {self.data_from!r}.')
    for name, least in (('batch_size', 1), ('max_examples', 0), ('eval_size', 0), ('max_boxes', 0)):
      if int(getattr(self, name)) < least:  # 0 = all examples / the training config's value
        raise InputError(f'sweep {name} must be at least {least}, got {getattr(self, name)}.')

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> 'Sweep':
    """The sweep of a config's plain values (`config.to_dict()`). Raises `InputError` for an unknown field."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
      raise InputError(f'unknown sweep field(s) {unknown}; valid: {sorted(known)}.')
    return cls(**{k: tuple(v) if k == 'scales' else v for k, v in values.items()})
