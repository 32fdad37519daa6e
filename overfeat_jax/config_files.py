"""Config files in and out: Python config modules (by path or module name) and the JSON configs on disk.

Config files are Python by design (ml_collections: `--config=path.py` runs its `get_config()`) and are loaded
by path, not imported as a package, so that `--config=` works from any directory; the configs that ship with
the package (the default, `DEFAULT_CONFIG`) are named by module path, so an installed wheel has them. The
resolved training config is saved once per run as `<workdir>/config.json` (`save_config`) and read back by
`predict`, `export` and the sweeps (`load_config`); `read_json` is the one JSON reader (one-line errors).
"""

import dataclasses
import importlib.util
import json
import os
from types import ModuleType
from typing import Any, Mapping

import jax
import ml_collections

from overfeat_jax import settings as settings_lib
from overfeat_jax import storage
from overfeat_jax.data import preprocess
from overfeat_jax.models import build
from overfeat_jax.models.geometry import get_geometry
from overfeat_jax.errors import InputError

CONFIG_FILE = 'config.json'  # the resolved training config, in the workdir (predict, export, sweeps read it)
# The CPU demo, `python -m overfeat_jax.main` without --config; a module path, so an installed wheel has it.
DEFAULT_CONFIG = 'overfeat_jax.configs.embedded'


def module_file(name: str) -> str:
  """The source file of the module `name` (e.g. `DEFAULT_CONFIG`), wherever the package is installed.

  Raises:
    InputError: no such module.
  """
  try:
    spec = importlib.util.find_spec(name)
  except ModuleNotFoundError:
    spec = None
  if spec is None or not spec.origin or not spec.origin.endswith('.py'):
    raise InputError(f'no config module {name!r}.')
  return spec.origin


def load_file(path: str, module_name: str) -> ModuleType:
  """The config module at `path` (a .py file), executed under `module_name`; one loader for every config."""
  spec = importlib.util.spec_from_file_location(module_name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_sibling(name: str, next_to: str) -> ModuleType:
  """The config module `name`.py in the directory of the file `next_to` (pass `__file__`)."""
  path = os.path.join(os.path.dirname(os.path.abspath(next_to)), f'{name}.py')
  return load_file(path, f'overfeat_configs_{name}')


def read_json(file: str, what: str) -> Any:
  """The JSON value of `file` (`what` it is, for the message); unreadable or malformed: one InputError."""
  try:
    data = storage.path(file).read_bytes()
  except OSError as e:  # unreadable (permissions), a folder, gone
    raise InputError(f'cannot read the {what} {file}: {storage.reason(e)}.') from None
  try:
    return json.loads(data.decode('utf-8'))
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise InputError(f'cannot read the {what} {file}: it is not valid JSON ({e}).') from None


def _tuples(value: Any) -> Any:
  """JSON lists back to the tuples the config files use (nested dicts stay dicts)."""
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  return value


def stage_config(config: ml_collections.ConfigDict, stage: str) -> ml_collections.ConfigDict:
  """The top-level config with the stage's own section (`config.<stage>`, if any) merged over it, locked: what
  the trainer builds each stage from, and what `predict` rebuilds a stage's networks from."""
  cfg = ml_collections.ConfigDict(config.to_dict())
  if stage in cfg and isinstance(cfg[stage], ml_collections.ConfigDict):
    cfg.update(cfg[stage])
  cfg.lock()
  return cfg


def stage_values(config: Mapping[str, Any], stage: str) -> dict[str, Any]:
  """`stage_config` of a config given as plain values (e.g. a config.json read back), as plain values: for
  callers below the edge, which take no config object (docs/ARCHITECTURE.md rule 4)."""
  return stage_config(ml_collections.ConfigDict(dict(config)), stage).to_dict()


def save_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes the resolved config (every override applied) as `workdir/config.json`: process 0, atomically."""
  if jax.process_index() == 0:
    storage.write_json_atomic(storage.path(workdir) / CONFIG_FILE, config.to_dict())


def load_config(workdir: str) -> ml_collections.ConfigDict | None:
  """The config a workdir was trained with (`save_config`), locked; None if the workdir has none.

  Raises:
    InputError: the file is not valid JSON or not a training config (no `stages`).
  """
  path = storage.path(workdir) / CONFIG_FILE
  if not path.is_file():
    return None
  data = read_json(path, 'training config')
  if not isinstance(data, dict) or 'stages' not in data:
    raise InputError(f'{path} is not a training config (no "stages" field).')
  config = ml_collections.ConfigDict(_tuples(data))
  config.lock()
  return config


def _section(cls: type, section: Any) -> Any:
  """`cls` (a settings dataclass) from a config section: its fields that the section has, defaults for the rest
  (a config saved before a field existed, e.g. `box.merge_average`, gets the field's default)."""
  values = {f.name: section[f.name] for f in dataclasses.fields(cls) if f.name in section}
  return cls(**values)


def input_settings(cfg: ml_collections.ConfigDict, stage: str) -> settings_lib.InputSettings:
  """The input pipeline's settings of `stage`'s config (`stage_config(config, stage)`): `config.data`, the batch
  sizes, the crop and the training resize (`scale_jitter` when set, else `resize_smaller`, 0 = none). Values are
  passed as they are; the pipeline checks them (`train.inputs`, `data.pipeline`: one-line InputErrors). The
  per-step whole-batch training scales come from `box.train_scales`, as (h, w) pairs, for a box stage
  (localization, detection) only: a top-level `box` section leaves classification's batches as they are."""
  data, jitter = cfg.data, tuple(cfg.get('scale_jitter', ()))
  box_stage = stage in ('localization', 'detection') and 'box' in cfg
  scales = settings_lib.as_sizes(cfg.box.get('train_scales', ())) if box_stage else ()
  return settings_lib.InputSettings(
      dataset=data.name, data_dir=data.data_dir, options=tuple(sorted(dict(data.options).items())),
      train_split=data.train_split, eval_split=data.eval_split, batch_size=cfg.batch_size,
      eval_batch_size=cfg.eval.batch_size, crop_size=cfg.crop_size,
      train_resize=jitter if jitter else (cfg.resize_smaller or None), max_boxes=cfg.max_boxes, seed=cfg.seed,
      worker_count=data.worker_count, read_as_hosts=data.get('read_as_hosts', 0), train_scales=scales)


def check_training_counts(cfg: ml_collections.ConfigDict) -> None:
  """The stage config's counts (`stage_config`): batch sizes, steps or epochs, and the cadences are numbers the
  loop can use, checked before anything is written (a `checkpoint_every_steps` of 0 divided by zero at the
  first step; a `batch_size` of 0 failed after the workdir was made; `num_train_steps=-5` quietly meant
  'use num_epochs', as its -1 sentinel does).

  Raises:
    InputError: one line naming the first field out of range, its value and the valid range.
  """
  def need(name: str, value: Any, ok: bool, valid: str) -> None:
    if not ok:
      raise InputError(f'--config.{name}={value!r}: must be {valid}')

  is_int = lambda v: isinstance(v, int) and not isinstance(v, bool)
  need('batch_size', cfg.batch_size, is_int(cfg.batch_size) and cfg.batch_size >= 1, 'a positive integer')
  need('eval.batch_size', cfg.eval.batch_size, is_int(cfg.eval.batch_size) and cfg.eval.batch_size >= 1,
       'a positive integer')
  steps = cfg.num_train_steps
  need('num_train_steps', steps, is_int(steps) and steps >= -1,
       'a positive number of steps, or -1 (or 0) to train num_epochs epochs')
  if steps <= 0:
    need('num_epochs', cfg.num_epochs, cfg.num_epochs > 0, 'positive when num_train_steps is not')
  need('log_every_steps', cfg.log_every_steps, is_int(cfg.log_every_steps) and cfg.log_every_steps >= 1,
       'a positive number of steps')
  need('checkpoint_every_steps', cfg.checkpoint_every_steps,
       is_int(cfg.checkpoint_every_steps) and cfg.checkpoint_every_steps >= 1, 'a positive number of steps')
  need('eval.every_steps', cfg.eval.every_steps, is_int(cfg.eval.every_steps) and cfg.eval.every_steps >= 0,
       'a number of steps, or 0 to evaluate only at the end')


def check_input_sizes(settings: settings_lib.StageSettings) -> None:
  """Every input size the stage's network will see reaches the geometry's minimum input
  (`Geometry.min_input_size`: the smallest size with one output cell, e.g. 231 for fast, 221 for accurate, 53
  for small), checked before any data is read or compiled: a smaller one would give a 0x0 map at layer 5
  (`inference.dense`) only after training. Checked fields: crop_size, eval.resize (the classification view, cut
  into training-size crops by the ten-crop view), eval.scales and, with a box section, box.eval_scales and
  box.train_scales (each side of an (h, w) pair). The multi-scale evaluations need at least one scale
  (eval.scales; box.eval_scales in a box stage). box.eval_size, the square view the box stages' scales are
  resized from, is never itself the network's input: any positive size. Both views (eval.resize, box.eval_size)
  stay within the image size limit (`preprocess.check_view_size`).

  Raises:
    InputError: one line naming the first field below the minimum (or empty), its value and what is valid.
  """
  geometry = get_geometry(settings.model.geometry, settings.model.width_divisor)
  minimum = geometry.min_input_size()
  fields = {'crop_size': settings.crop_size, 'eval.resize': settings.eval.resize, 'eval.scales': settings.eval.scales}
  needed = {'eval.scales': settings.eval.scales}
  if settings.box is not None:
    fields.update({'box.train_scales': settings.box.train_scales, 'box.eval_scales': settings.box.eval_scales})
    needed = {'box.eval_scales': settings.box.eval_scales}  # a box stage evaluates at these, not eval.scales
    if settings.box.eval_size < 1:
      raise InputError(f'--config.box.eval_size={settings.box.eval_size} must be a positive number of pixels')
    preprocess.check_view_size(settings.box.eval_size, '--config.box.eval_size')
  preprocess.check_view_size(settings.eval.resize, '--config.eval.resize')
  for name, value in needed.items():
    if not value:
      raise InputError(f'--config.{name} is empty: the multi-scale evaluation needs at least one (h, w) scale '
                       f'of {minimum} pixels or more')
  for name, value in fields.items():
    sides = (value,) if isinstance(value, int) else [side for size in value for side in size]  # (h, w) pairs
    if any(side < minimum for side in sides):
      raise InputError(f'--config.{name}={value} is below the {geometry.name} network\'s minimum input of '
                       f'{minimum} pixels (a smaller input gives no output): use {minimum} or more')


def settings_from_config(config: ml_collections.ConfigDict, stage: str) -> settings_lib.StageSettings:
  """The typed settings of `stage` (`overfeat_jax.settings`): the config's `stage` section merged over its top
  level (`stage_config`), read once; nothing below the entry points and the loop reads the config.

  Scales become (h, w) int pairs, widths tuples. Raises:
    InputError: an unknown stage, dtype or box regression; an input size below the network's minimum
      (`check_input_sizes`).
  """
  if stage not in settings_lib.TASK_NAMES:
    raise InputError(f'unknown stage {stage!r}; available: {sorted(settings_lib.TASK_NAMES)}')
  cfg = stage_config(config, stage)
  build.dtype_of(cfg.dtype)  # InputError for an unknown dtype name, before any work
  check_training_counts(cfg)
  model = _section(settings_lib.ModelSettings, {**cfg.model.to_dict(), 'dtype': cfg.dtype})
  evaluation = _section(settings_lib.EvalSettings,
                        {**cfg.eval.to_dict(), 'scales': settings_lib.as_sizes(cfg.eval.scales)})
  box = mining = None
  if 'box' in cfg:
    b = cfg.box.to_dict()
    if b.get('regression', 'single') not in settings_lib.REGRESSION:
      raise InputError(f'box.regression must be one of {settings_lib.REGRESSION}, got {b["regression"]!r}.')
    b.update({k: settings_lib.as_sizes(b[k]) for k in ('train_scales', 'eval_scales') if k in b})
    b.update({'hidden': tuple(int(h) for h in b['hidden'])} if 'hidden' in b else {})
    box = _section(settings_lib.BoxSettings, b)
  if 'mining' in cfg:
    mining = _section(settings_lib.MiningSettings, cfg.mining.to_dict())
  settings = settings_lib.StageSettings(stage=stage, num_classes=int(cfg.num_classes),
                                        crop_size=int(cfg.crop_size), model=model, eval=evaluation, box=box,
                                        mining=mining, dataset=str(cfg.data.name),
                                        data_dir=str(cfg.data.data_dir or ''))
  check_input_sizes(settings)
  return settings
