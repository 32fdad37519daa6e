"""Runs a sweep's points over the evaluation split: metrics, analytic GFLOP/image and measured ms/image per point.

Resumable: every finished point is written atomically as `<output>/points/<key>.json` (the key hashes the point
and the identity of its networks: checkpoint path and step), and a point whose file exists is read, not
recomputed. Only process 0 should run sweeps (they are single-host evaluations on the default device).
"""

import dataclasses
import functools
import json
import os
import time
from typing import Any, Callable, Iterator, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from overfeat_jax import config_files, storage, tasks
from overfeat_jax.checkpoint import export as export_lib
from overfeat_jax.data import preprocess
from overfeat_jax.errors import InputError
from overfeat_jax.progress import format_duration, progress_bar
from overfeat_jax.settings import (WITH_BACKGROUND, BoxSettings, EvalSettings, MiningSettings, ModelSettings,
                                   StageSettings, as_sizes)
from overfeat_jax.sweeps.grid import DEFAULT_AVERAGE, Point, Sweep, expand
from overfeat_jax.tasks import classification
from overfeat_jax.tasks.task import Evaluation, Task

RECORD_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Network:
  """A trained network the sweep evaluates: its label, identity (for the cache key), spec and params."""
  label: str
  ident: str
  spec: export_lib.NetworkSpec
  params: Any


def load_network(path: str, stage: str) -> Network:
  """A training workdir (the stage's latest checkpoint) or an exported artifact directory (local or gs://)."""
  path = storage.url(path)
  if export_lib.is_artifact(path):
    config, spec, params = export_lib.read_artifact(path)
    ident = f'{path}#{config["params"]["sha256"][:16]}'
  else:
    step, params = export_lib.load_trained(path, stage)
    spec, ident = export_lib.infer_network(params), f'{path}@{step}'
  if stage == 'classification' and 'backbone' in params:
    params = params['backbone']
  elif stage != 'classification' and 'backbone' not in params:
    raise InputError(f'{path} holds no box regressor; a {stage} sweep needs a {stage} checkpoint.')
  label = f'{spec.geometry}/{spec.width_divisor} {os.path.basename(path.rstrip("/"))}'
  return Network(label, ident, spec, params)


def load_train_config(spec: str, workdir: str | None = None) -> dict[str, Any]:
  """The training config `spec` names, as plain values (`get_config(arg).to_dict()`).

  `spec` is `name[:arg]`: a config module path (e.g. 'overfeat_jax.configs.embedded', found wherever the package
  is installed, `config_files.module_file`) or a `.py` file path (relative to the working directory); empty: the
  config `workdir` was trained with (`<workdir>/config.json`).

  Raises:
    InputError: no such module or file, or (empty `spec`) no config.json in `workdir`.
  """
  if not spec:
    saved = config_files.load_config(workdir) if workdir else None
    if saved is None:
      raise InputError(f'the sweep names no train_config and {workdir or "no workdir"} has no config.json; '
                       'set the sweep\'s train_config.')
    return saved.to_dict()
  name, _, arg = spec.partition(':')
  path = name if name.endswith('.py') else config_files.module_file(name)
  if not os.path.isfile(path):
    raise InputError(f'training config {spec!r} not found.')
  return config_files.load_file(path, 'overfeat_sweep_train_config').get_config(arg).to_dict()


@dataclasses.dataclass(frozen=True)
class EvalSetup:
  """What every point reads: the view size, the scale list, the crop size, the data, the box options."""
  task: str
  size: int
  scales: tuple[tuple[int, int], ...]
  crop_size: int
  batch_size: int
  max_examples: int
  data: dict
  box: dict


def make_setup(sweep: Sweep, train: Mapping[str, Any], workdir_train: Mapping[str, Any] | None = None) -> EvalSetup:
  """The sweep's evaluation setup: the sweep's own `eval_size`/`scales` if set, else the training config's; the
  data of `workdir_train` when given and `sweep.data_from` is 'workdir', else the training config's. Both configs
  are read as the trainer builds the sweep's stage: its section (`config.<task>`) merged over the top level
  (`config_files.stage_config`), so a localization sweep reads `localization.box` and `localization.crop_size`.

  Args:
    sweep: the sweep definition.
    train: the training config as plain values (`load_train_config`; `config.to_dict()`): its `data`
      (name, eval_split, data_dir, options), `crop_size`, `max_boxes`, `eval` (resize, scales) and `box`
      (eval_size, eval_scales; localization/detection).
    workdir_train: the `--workdir`'s config.json as plain values, or None (an exported artifact): its `data` and
      `max_boxes` (e.g. a smoke run's 16-image test split, not the full one).

  Raises:
    InputError: neither the sweep nor the training config has evaluation scales; a view above the image pixel
      limit (`preprocess.check_view_size`).
  """
  train = config_files.stage_values(train, sweep.task)
  train_box = train.get('box') if sweep.task != 'classification' else None
  size = sweep.eval_size or (train_box['eval_size'] if train_box else train['eval']['resize'])
  scales = sweep.scales or (train_box['eval_scales'] if train_box else train['eval']['scales'])
  if not scales:
    raise InputError('the sweep has no scales (set `scales` in the sweep or a training config that has them).')
  preprocess.check_view_size(int(size), 'the sweep\'s eval_size' if sweep.eval_size else 'the evaluation view')
  use_workdir = workdir_train is not None and sweep.data_from == 'workdir'
  source = config_files.stage_values(workdir_train, sweep.task) if use_workdir else train
  d = source['data']
  data = {'name': sweep.data_name or d['name'], 'split': d['eval_split'], 'data_dir': d['data_dir'],
          'options': dict(d['options']), 'max_boxes': int(sweep.max_boxes or source['max_boxes'])}
  return EvalSetup(sweep.task, int(size), as_sizes(scales), int(train['crop_size']), int(sweep.batch_size),
                   int(sweep.max_examples), data, dict(sweep.box))


def workdir_setup(sweep: Sweep, workdir: str, log: Callable[[str], None] = print) -> EvalSetup:
  """`make_setup` for the sweep's `--workdir`: its training config (`load_train_config`; an empty
  `sweep.train_config`: the workdir's config.json, read once) and, for the data, the workdir's own config.json when
  it has one (`sweep.data_from`). An exported artifact (`export_lib.is_artifact`) is a workdir without a training
  config: its config.json describes the network, not the data it was trained on, so its sweep reads the
  train_config's data (and needs a train_config). Logs (`log`) one line naming the data and where it came from.
  Nothing is built or read here.

  Raises:
    InputError: as `load_train_config`, `config_files.load_config` and `make_setup`; an artifact with an empty
      `sweep.train_config`.
  """
  artifact = export_lib.is_artifact(workdir)
  if artifact and not sweep.train_config:
    raise InputError(f'the sweep names no train_config and {workdir} is an exported artifact (its config.json '
                     'describes the network, not the training run); set the sweep\'s train_config.')
  saved = None if artifact else config_files.load_config(workdir)  # None: no config.json
  saved = saved.to_dict() if saved is not None else None
  train = saved if saved is not None and not sweep.train_config else load_train_config(sweep.train_config, workdir)
  setup = make_setup(sweep, train, saved)
  origin = f'{workdir}/config.json' if saved is not None and sweep.data_from == 'workdir' else 'the train_config'
  if artifact and sweep.data_from == 'workdir':
    origin += f' ({workdir} is an exported artifact: it names no data)'
  log(f'data: {setup.data["name"]} split {setup.data["split"]} under {setup.data["data_dir"]}, from {origin}')
  return setup


def output_folder(output: str, workdir: str, name: str) -> str:
  """The sweep's results folder: `output` if given, else `<workdir>/sweeps/<name>` for a training workdir.

  Raises:
    InputError: no `output` and `workdir` is an exported artifact (its folder holds the network's two files
      only, and exporting again replaces it, results and all).
  """
  if output:
    return output
  if export_lib.is_artifact(workdir):
    raise InputError(f'--workdir {workdir} is an exported artifact: give --output (the results folder); an '
                     'artifact folder holds only the network, and exporting again replaces it.')
  return os.path.join(workdir, 'sweeps', name)


@functools.cache
def _source_options(name: str, data_dir: str, options: str) -> str:
  """The options (JSON) the sweep opens dataset `name` with, decided once per sweep: an embedded dataset not
  built yet gets train_size 1 (tfds builds every split), so that only its evaluation split is built; its images
  depend on the seed, split and index alone (`data.embedded.draw_example`), not on train_size."""
  from overfeat_jax.data import embedded, pipeline  # pylint: disable=g-import-not-at-top
  values = json.loads(options)
  if name in pipeline.EMBEDDED and not embedded.is_built(data_dir, pipeline.EMBEDDED[name], **values):
    values['train_size'] = 1
  return json.dumps(values)


def eval_batches(setup: EvalSetup) -> Iterator[dict[str, np.ndarray]]:
  """The evaluation split resized to `setup.size`, in order, with a `mask`; at most `max_examples` real rows. An
  embedded dataset not built yet is built for its evaluation split only (the sweep never reads the training one:
  10,000 images for cls_loc)."""
  from overfeat_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  d = setup.data
  options = json.loads(_source_options(d['name'], d['data_dir'], json.dumps(d['options'], sort_keys=True)))
  source = pipeline.open_source(d['name'], d['split'], data_dir=d['data_dir'], **options)
  batches = pipeline.eval_iterator(source, batch_size=setup.batch_size, view='resize', size=setup.size,
                                   max_boxes=d['max_boxes'], shard_index=0, shard_count=1)
  seen = 0
  for batch in batches:
    if setup.max_examples and seen >= setup.max_examples:
      return
    mask = batch['mask'].astype(bool)
    if setup.max_examples:
      mask &= np.cumsum(mask) + seen <= setup.max_examples
    seen += int(mask.sum())
    yield {**batch, 'mask': mask}


# --- cost -------------------------------------------------------------------------------------------------
def head_macs(geometry, num_classes: int, regressor: tuple[int, ...] = ()) -> int:
  """Multiply-adds of the classifier (and the regressor: hidden widths + outputs) for one output cell."""
  size = geometry.input_size
  macs = geometry.multiply_adds(size, size, num_classes)
  total = sum(macs[n] for n in geometry.fc_names())
  if regressor:
    widths = (geometry.layer5_channels * geometry.fc_kernel ** 2,) + tuple(regressor)
    total += sum(a * b for a, b in zip(widths, widths[1:]))
  return total


def network_gflop(spec: export_lib.NetworkSpec, point: Point, setup: EvalSetup) -> float:
  """GFLOP (2 x multiply-adds) per image of one network at a point, from `Geometry.multiply_adds`.

  Dense: layers 1-5 once per scale and flip, the head once per cell of the (coarse or interleaved fine) map.
  Crops: the whole network once per view at its training size.
  """
  geometry = spec.classifier().geometry
  regressor = (spec.regressor_hidden + (4 * spec.regressor_outputs,)) if spec.regressor_outputs else ()
  per_cell = head_macs(geometry, spec.num_classes, regressor)
  flips = 2 if point.flips else 1
  if point.view != 'dense':
    size = geometry.input_size
    views = (5 if point.view == 'ten_crop' else 1) * flips
    return 2 * views * sum(geometry.multiply_adds(size, size, spec.num_classes).values()) / 1e9
  total = 0
  for h, w in setup.scales[:point.num_scales]:
    macs = geometry.multiply_adds(h, w, spec.num_classes)
    features = sum(v for n, v in macs.items() if n not in geometry.fc_names())
    cells = geometry.output_size(h, fine=point.fine) * geometry.output_size(w, fine=point.fine)
    total += flips * (features + cells * per_cell)
  return 2 * total / 1e9


def label(point: Point, networks: Sequence[Network], setup: EvalSetup) -> str:
  """The row's approach text, e.g. 'small/8 demo_s0, 4 scales (72-120), fine stride, flips'."""
  nets = networks[point.models[0]].label if len(point.models) == 1 else \
      f'{len(point.models)}-model ensemble ({", ".join(networks[i].label for i in point.models)})'
  flips = 'flips' if point.flips else 'no flips'
  if point.view == 'dense':
    scales = setup.scales[:point.num_scales]
    span = f'{scales[0][0]}' if len(scales) == 1 else f'{scales[0][0]}-{scales[-1][0]}'
    text = (f'{nets}, {len(scales)} scale{"s" if len(scales) > 1 else ""} ({span}), '
            f'{"fine" if point.fine else "coarse"} stride, {flips}')
  else:
    views = '10 views (4 corners + centre, + flips)' if point.view == 'ten_crop' and point.flips else (
        '5 views (4 corners + centre)' if point.view == 'ten_crop' else f'centre crop, {flips}')
    text = f'{nets}, {views}'
  if setup.task != 'classification':
    text += f', {point.merge} t={point.threshold:g}' + (f' k={point.top_k}' if setup.task == 'localization' else '')
    if point.average != DEFAULT_AVERAGE:
      text += f', {point.average}-weighted merge'
  return f'{point.name}: {text}' if point.name else text


# --- checks before any point -----------------------------------------------------------------------------
def check_points(points: Sequence[Point], networks: Sequence[Network], setup: EvalSetup) -> None:
  """Refuses, before anything is evaluated or written, a sweep whose points cannot all run:

  - the same network given twice (equal `Network.ident`: checkpoint path and step, or artifact path and checksum);
  - a dense point that feeds a network a scale (either side of the first `num_scales` of `setup.scales`) below
    its geometry's minimum input (`Geometry.min_input_size`: smaller gives no output cell), as `main` refuses
    such a training config (`config_files.check_input_sizes`);
  - a crop-view point of a network whose training size (the crop) exceeds the evaluation view (`setup.size`);
  - an ensemble point whose members have different class counts (their probabilities cannot be averaged).

  Raises:
    InputError: one line naming the first offending point's network(s) and the values at fault.
  """
  seen = {}
  for i, network in enumerate(networks):
    if network.ident in seen:
      raise InputError(f'networks {seen[network.ident] + 1} and {i + 1} (--workdir first, then --checkpoints) are '
                       f'the same network {network.ident}; give each network once.')
    seen[network.ident] = i
  geometries = [n.spec.classifier().geometry for n in networks]  # once per network, not per point
  minimums = [g.min_input_size() for g in geometries]
  for point in points:
    for i in point.models:
      net, geometry, minimum = networks[i], geometries[i], minimums[i]
      if point.view == 'dense':
        for h, w in setup.scales[:point.num_scales]:
          if min(h, w) < minimum:
            raise InputError(f'the sweep evaluates {net.label} at {h}x{w} pixels, below the {geometry.name} '
                             f'network\'s minimum input of {minimum} pixels (a smaller input gives no output); use '
                             f'scales of {minimum} pixels or more.')
      elif geometry.input_size > setup.size:
        raise InputError(f'the sweep\'s crop views cut {net.label}\'s training size ({geometry.input_size} pixels) '
                         f'out of the {setup.size}-pixel evaluation view; use an eval_size of '
                         f'{geometry.input_size} or more, or leave that network out of the crop points.')
    classes = [networks[i].spec.num_classes for i in point.models]
    if len(set(classes)) > 1:
      members = ', '.join(f'{networks[i].label} has {n}{"" if k else " outputs"}'
                          for k, (i, n) in enumerate(zip(point.models, classes)))
      where = f'point {point.name!r}' if point.name else 'an ensemble grid point'
      raise InputError(f'{where} averages the class probabilities of networks with different class '
                       f'counts: {members}; ensemble only networks trained on the same classes.')


# --- evaluation -------------------------------------------------------------------------------------------
def point_settings(point: Point, spec: export_lib.NetworkSpec, setup: EvalSetup) -> StageSettings:
  """The typed stage settings of one network at a point: the network from its spec, the evaluation (scales,
  flips, stride, box merge) from the point, so the task built from them evaluates exactly this point."""
  task = setup.task
  scales = setup.scales[:point.num_scales]
  model = ModelSettings(geometry=spec.geometry, width_divisor=spec.width_divisor, dtype=spec.dtype)
  box = None
  if task != 'classification':
    options = {k: v for k, v in setup.box.items() if k in ('score_threshold', 'max_per_scale', 'max_detections')}
    box = BoxSettings(regression='per_class' if spec.regressor_outputs > 1 else 'single',
                      hidden=tuple(spec.regressor_hidden), fine=point.fine, eval_size=setup.size,
                      eval_scales=scales, top_k=point.top_k, merge=point.merge, merge_average=point.average,
                      threshold=point.threshold, nms_iou=point.threshold, **options)
  return StageSettings(task, spec.num_classes - (task in WITH_BACKGROUND), setup.crop_size, model=model,
                       eval=EvalSettings(setup.size, scales, point.flips, point.fine), box=box,
                       mining=MiningSettings() if task in WITH_BACKGROUND else None,  # training only: defaults
                       dataset=setup.data.get('name', ''))


def point_tasks(point: Point, networks: Sequence[Network], setup: EvalSetup) -> list[Task]:
  """The task (`tasks.TASKS`) of each network of the point, built from `point_settings`."""
  return [tasks.make(point_settings(point, networks[i].spec, setup)) for i in point.models]


def whole_image_evaluation(task: Task) -> Evaluation:
  """The task's evaluation of the `resize` view (whole images at the settings' scales): the sweep's dense one."""
  (evaluation,) = [e for e in task.evaluations if e.view == 'resize']
  return evaluation


def outputs_fn(point: Point, stage_tasks: Sequence[Task]) -> Callable:
  """fn(params_list, batch) -> the task's per-example evaluation outputs at the point (what its summary reads).

  `stage_tasks` are the point's tasks (`point_tasks`). A dense point of one network is the task's own evaluation
  step (the trainer's); the paper's crop views and multi-network rows (classification only, `grid`) average the
  classification predictor's probabilities.

  Raises:
    InputError: a localization/detection point with several networks or a crop view.
  """
  if point.view == 'dense' and len(stage_tasks) == 1:
    step = whole_image_evaluation(stage_tasks[0]).eval_step
    return lambda params, batch: step(params[0], batch)
  if stage_tasks[0].name != 'classification':
    raise InputError(f'{stage_tasks[0].name} points evaluate one network densely (no ensembles or crop views).')
  predictors = [classification.make_predictor(t.model, t.settings, view=point.view) for t in stage_tasks]

  def step(params, batch):
    scores = [predict(p, batch['image'])['scores'] for predict, p in zip(predictors, params)]
    return classification.score_outputs(jnp.mean(jnp.stack(scores), axis=0), batch['label'])
  return step


def summarize(stage_tasks: Sequence[Task], outputs: dict[str, np.ndarray]):
  """The task's metrics (its summary, its names: docs/metrics_and_merge.md) of every evaluated example;
  `stage_tasks`: the point's tasks (`point_tasks`)."""
  return whole_image_evaluation(stage_tasks[0]).summarize(outputs)


def evaluate_point(point: Point, networks: Sequence[Network], setup: EvalSetup) -> dict[str, Any]:
  """Metrics, GFLOP/image, compile seconds and measured ms/image (compute only, after compiling) of a point."""
  params = [networks[i].params for i in point.models]
  stage_tasks = point_tasks(point, networks, setup)  # built once: the step and the summary
  fn, compiled, parts = jax.jit(outputs_fn(point, stage_tasks)), None, {}
  compile_s, run_s, rows = 0.0, 0.0, 0
  for batch in eval_batches(setup):
    inputs = {k: jnp.asarray(v) for k, v in batch.items()}
    if compiled is None:
      start = time.perf_counter()
      compiled = fn.lower(params, inputs).compile()
      compile_s = time.perf_counter() - start
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(params, inputs))
    run_s += time.perf_counter() - start
    rows += batch['mask'].shape[0]
    for k, v in jax.device_get(out).items():  # padding rows dropped, as the trainer's evaluator does
      parts.setdefault(k, []).append(np.asarray(v)[batch['mask']])
  if compiled is None:
    raise InputError('the evaluation split is empty.')
  metrics = summarize(stage_tasks, {k: np.concatenate(v) for k, v in parts.items()})
  gflop = sum(network_gflop(networks[i].spec, point, setup) for i in point.models)
  return {'metrics': metrics, 'gflop_per_image': gflop, 'ms_per_image': 1e3 * run_s / rows,
          'compile_seconds': compile_s, 'images': rows, 'device': jax.devices()[0].device_kind}


def run_sweep(sweep: Sweep, networks: Sequence[Network], output: str, *,
              setup: EvalSetup, evaluate: Callable = evaluate_point,
              log: Callable[[str], None] = logging.info) -> tuple[list[dict], dict[str, int]]:
  """Every point of `sweep`: read from `output/points` if done, else evaluated and written. Returns
  (records in sweep order, {'computed': n, 'cached': n})."""
  points = expand(sweep, len(networks), len(setup.scales))
  check_points(points, networks, setup)
  folder = storage.makedirs(os.path.join(output, 'points'))
  ids, context = tuple(n.ident for n in networks), json.dumps(dataclasses.asdict(setup), sort_keys=True)
  paths = [folder / (p.key(ids, context) + '.json') for p in points]
  todo = sum(not p.exists() for p in paths)
  records, stats, spent = [], {'computed': 0, 'cached': 0}, 0.0
  log(f'sweep: {len(points)} points, {len(points) - todo} already done, {todo} to evaluate')
  for i, (point, path) in enumerate(zip(points, paths)):
    text = label(point, networks, setup)
    if path.exists():
      record = json.loads(path.read_text())
      # The file holds this evaluation's result (the key hashes all that changes it), perhaps saved under an
      # earlier row name: the row is named as this sweep names it.
      record['label'], record['point']['name'] = text, point.name
      records.append(record)
      stats['cached'] += 1
      continue
    start = time.perf_counter()
    result = evaluate(point, networks, setup)
    spent += time.perf_counter() - start
    stats['computed'] += 1
    record = {'version': RECORD_VERSION, 'task': setup.task, 'label': text, 'point': dataclasses.asdict(point),
              'networks': [networks[j].ident for j in point.models], **result}
    storage.write_json_atomic(path, record)
    records.append(json.loads(json.dumps(record)))  # as a later run reads it back (lists, not tuples)
    eta = spent / stats['computed'] * (todo - stats['computed'])
    log(f'sweep {progress_bar(i + 1, len(points))} {i + 1}/{len(points)} | {time.perf_counter() - start:.1f} s | '
        f'ETA {format_duration(eta)} | {text} | ' +
        ', '.join(f'{k} {v:.4f}' for k, v in result['metrics'].items() if k != 'count'))
  return records, stats
