"""Runs a sweep's points over the evaluation split: metrics, analytic GFLOP/image and measured ms/image per point.

Resumable: every finished point is written atomically as `<output>/points/<key>.json` (the key hashes the point
and the identity of its networks: checkpoint path and step), and a point whose file exists is read, not
recomputed. Only process 0 should run sweeps (they are single-host evaluations on the default device).
"""

import dataclasses
import json
import os
import time
from typing import Any, Callable, Iterator, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from overfeat_jax import config_files, storage
from overfeat_jax.checkpoint import export as export_lib
from overfeat_jax.errors import InputError
from overfeat_jax.inference import ensemble
from overfeat_jax.progress import format_duration, progress_bar
from overfeat_jax.settings import as_sizes
from overfeat_jax.sweeps.grid import DEFAULT_AVERAGE, Point, Sweep, expand

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


def make_setup(sweep: Sweep, train: Mapping[str, Any]) -> EvalSetup:
  """The sweep's evaluation setup: the sweep's own `eval_size`/`scales` if set, else the training config's.

  Args:
    sweep: the sweep definition.
    train: the training config as plain values (`load_train_config`; `config.to_dict()`): its `data`
      (name, eval_split, data_dir, options), `crop_size`, `max_boxes`, `eval` (resize, scales) and `box`
      (eval_size, eval_scales; localization/detection).

  Raises:
    InputError: neither the sweep nor the training config has evaluation scales.
  """
  train_box = train.get('box') if sweep.task != 'classification' else None
  size = sweep.eval_size or (train_box['eval_size'] if train_box else train['eval']['resize'])
  scales = sweep.scales or (train_box['eval_scales'] if train_box else train['eval']['scales'])
  if not scales:
    raise InputError('the sweep has no scales (set `scales` in the sweep or a training config that has them).')
  d = train['data']
  data = {'name': sweep.data_name or d['name'], 'split': d['eval_split'], 'data_dir': d['data_dir'],
          'options': dict(d['options']), 'max_boxes': int(sweep.max_boxes or train['max_boxes'])}
  return EvalSetup(sweep.task, int(size), as_sizes(scales), int(train['crop_size']), int(sweep.batch_size),
                   int(sweep.max_examples), data, dict(sweep.box))


def eval_batches(setup: EvalSetup) -> Iterator[dict[str, np.ndarray]]:
  """The evaluation split resized to `setup.size`, in order, with a `mask`; at most `max_examples` real rows."""
  from overfeat_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  d = setup.data
  source = pipeline.open_source(d['name'], d['split'], data_dir=d['data_dir'], **d['options'])
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


crop_views = ensemble.crop_views  # re-exported: the sweep's crop views


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


# --- evaluation -------------------------------------------------------------------------------------------
def predict_fn(point: Point, networks: Sequence[Network], setup: EvalSetup) -> Callable:
  """fn(params_list, images) -> outputs of the point (class scores, or localization/detection guesses)."""
  if setup.task == 'classification':
    return classification_fn(point, [networks[i].spec.classifier() for i in point.models], setup)
  if len(point.models) != 1:
    raise InputError(f'{setup.task} points evaluate one network at a time (no ensembles).')
  from overfeat_jax.inference import detect, localize  # pylint: disable=g-import-not-at-top
  spec = networks[point.models[0]].spec
  box_model = localize.BoxModel(spec.classifier(), spec.regressor())
  scales, b = setup.scales[:point.num_scales], setup.box
  if setup.task == 'localization':
    return lambda params, images: localize.localize(
        box_model, params[0], images, scales=scales, top_k=point.top_k, method=point.merge,
        threshold=point.threshold, fine=point.fine, average=point.average)
  return lambda params, images: detect.detect(
      box_model, params[0], images, scales=scales, score_threshold=b['score_threshold'], method=point.merge,
      threshold=point.threshold, max_per_scale=b['max_per_scale'], max_detections=b['max_detections'],
      fine=point.fine, average=point.average)


def classification_fn(point: Point, models: Sequence[Any], setup: EvalSetup) -> Callable:
  """Class probabilities [B, C] averaged over views (and over the networks of an ensemble)."""
  options = dict(view=point.view, scales=setup.scales[:point.num_scales], flips=point.flips, fine=point.fine)
  return lambda params, images: {'scores': ensemble.ensemble_scores(models, params, images, **options)}


class Metrics:
  """Streams a point's outputs batch by batch into the task's metrics (padding rows skipped)."""

  def __init__(self, task: str, num_classes: int):
    from overfeat_jax.metrics import classification, detection, localization  # pylint: disable=g-import-not-at-top
    self.task = task
    self.topk = classification.TopKCounts.empty((1, 5))
    self.loc = localization.LocalizationCounts()
    self.det = detection.DetectionAccumulator(num_classes) if task == 'detection' else None

  def add(self, out: dict[str, np.ndarray], batch: dict[str, np.ndarray]) -> None:
    mask = batch['mask']
    if self.task == 'classification':
      self.topk = self.topk.update(out['scores'], batch['label'], mask)
    elif self.task == 'localization':
      self.loc = self.loc.update_batch(out['classes'], out['boxes'], batch['box_labels'], batch['boxes'], mask)
    else:
      for b in np.flatnonzero(mask):
        keep, gt = out['valid'][b], batch['box_labels'][b] >= 0
        ignore = batch['ignore_classes'][b] if 'ignore_classes' in batch else np.zeros(0, int)  # DET blacklist
        self.det.add_image(out['boxes'][b][keep], out['scores'][b][keep], out['classes'][b][keep],
                           batch['boxes'][b][gt], batch['box_labels'][b][gt], ignore_classes=ignore[ignore >= 0])

  def result(self) -> dict[str, float]:
    if self.task == 'classification':
      return {**self.topk.errors(), 'count': self.topk.count}
    if self.task == 'localization':
      r = self.loc.result()
      return {'loc_error': r.error, 'top5_error': r.classification_error, 'count': r.num_images}
    r = self.det.result()
    return {'mAP': r.mean_ap, 'count': r.num_images}


def evaluate_point(point: Point, networks: Sequence[Network], setup: EvalSetup) -> dict[str, Any]:
  """Metrics, GFLOP/image, compile seconds and measured ms/image (compute only, after compiling) of a point."""
  params = [networks[i].params for i in point.models]
  fn, compiled, metrics = jax.jit(predict_fn(point, networks, setup)), None, None
  compile_s, run_s, rows = 0.0, 0.0, 0
  for batch in eval_batches(setup):
    images = jnp.asarray(batch['image'])
    if compiled is None:
      start = time.perf_counter()
      compiled = fn.lower(params, images).compile()
      compile_s = time.perf_counter() - start
      num_classes = networks[point.models[0]].spec.num_classes - (setup.task == 'detection')
      metrics = Metrics(setup.task, num_classes)
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(params, images))
    run_s += time.perf_counter() - start
    rows += images.shape[0]
    metrics.add(jax.device_get(out), batch)
  if compiled is None:
    raise InputError('the evaluation split is empty.')
  gflop = sum(network_gflop(networks[i].spec, point, setup) for i in point.models)
  return {'metrics': metrics.result(), 'gflop_per_image': gflop, 'ms_per_image': 1e3 * run_s / rows,
          'compile_seconds': compile_s, 'images': rows, 'device': jax.devices()[0].device_kind}


def run_sweep(sweep: Sweep, networks: Sequence[Network], output: str, *,
              setup: EvalSetup, evaluate: Callable = evaluate_point,
              log: Callable[[str], None] = logging.info) -> tuple[list[dict], dict[str, int]]:
  """Every point of `sweep`: read from `output/points` if done, else evaluated and written. Returns
  (records in sweep order, {'computed': n, 'cached': n})."""
  points = expand(sweep, len(networks), len(setup.scales))
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
