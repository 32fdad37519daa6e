"""Training and evaluation of the configured stages: the one place that reads the config.

`train_and_evaluate(config, workdir)` runs `config.stages` in order (classification, localization, detection:
the registry `TASKS`), each in `workdir/<stage>` with its own checkpoints and TensorBoard
events; a later stage gets the earlier stage's final parameters. A stage that finished is not trained again
(its checkpoint at the last step is restored), so rerunning a command resumes wherever it stopped.
"""

import contextlib
import dataclasses
import functools
import json
import os
import re
import signal
import time
from typing import Any, Callable

import jax
import ml_collections
from absl import logging
import numpy as np

from overfeat_jax import config_files, storage, tasks
from overfeat_jax.checkpoint import manager as ckpt
from overfeat_jax.checkpoint import transfer
from overfeat_jax.errors import InputError
from overfeat_jax.models.geometry import get_geometry
from overfeat_jax.parallel import mesh as mesh_lib
from overfeat_jax.train import evaluate, inputs, optim
from overfeat_jax.train import programs as programs_lib
from overfeat_jax.train import state as state_lib
from overfeat_jax.train.logging import Progress, Writer
from overfeat_jax.settings import InputSettings
from overfeat_jax.tasks.task import Task

TASKS = tasks.TASKS  # the one registry of stages (`overfeat_jax.tasks`): name -> make_task(settings, previous)


class NonFiniteLossError(InputError):
  """The loss or a gradient became NaN/inf (usually a learning rate too high for the batch)."""


class CheckpointWriteError(InputError):
  """Writing a checkpoint failed (a full disk, a quota, permissions); the complete checkpoints before it are
  intact (orbax writes to a tmp directory and renames it only once complete)."""


@contextlib.contextmanager
def checkpoint_writes(manager: Any):
  """Turns any failure of an (async) checkpoint write, which orbax re-raises at the next save or wait as
  OSError, ValueError(RESOURCE_EXHAUSTED), ..., into one `CheckpointWriteError` line."""
  try:
    yield
  except CheckpointWriteError:
    raise
  except Exception as e:  # pylint: disable=broad-except  (orbax/tensorstore raise many types)
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    # tensorstore names the OS error by code after a long path: the reason first, so truncation cannot cut it
    code = re.search(r"os_error_code='(\d+)'", str(e))
    cause = f'{os.strerror(int(code.group(1)))}; ' if code else ''
    raise CheckpointWriteError(
        f'writing a checkpoint under {manager.directory} failed ({cause}{type(e).__name__}: '
        f'{(lines[-1] if lines else "")[:300]}); the checkpoints completed before it are intact') from e


class Preemption:
  """SIGTERM or Ctrl-C (SIGINT) during the training loop: every process saves the same step and returns
  (`main` exits 0 after a SIGTERM, 130 after a Ctrl-C, with one line naming the saved step). A second Ctrl-C
  raises KeyboardInterrupt at once (no save; `main` prints one line and exits 130).

  The handler only sets a flag. One process reads it after every step. Several processes: after every step
  each adds its flag to a one-integer all-reduce over the mesh (`any_process`), dispatched behind the step and
  read one step later, so the read never stalls the device and every process sees the same value at the same
  step: a SIGTERM to any one host stops all of them at most two steps later. Outside this context SIGTERM
  keeps its default action, ending the process at once as a kill would (start-up, dataset build, compilation,
  evaluation), and Ctrl-C raises KeyboardInterrupt (`main`: one line, exit 130); jax's own preemption
  notifier, which turns SIGTERM into a flag polled once a second and read
  only through `reached_preemption_sync_point`, is switched off (`parallel.distributed.initialize`).
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self, mesh: Any):
    self.requested = False
    self.signal_name = None  # 'SIGTERM' or 'SIGINT': the first signal this process received
    self._previous = {}
    self._any = any_process(mesh) if jax.process_count() > 1 else None
    self._pending = None

  def __enter__(self) -> 'Preemption':
    for signum in self.SIGNALS:
      if signal.getsignal(signum) is not signal.SIG_IGN:  # e.g. SIGINT of a `cmd &` started by a script
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for signum, previous in self._previous.items():
      signal.signal(signum, signal.SIG_DFL if previous is None else previous)

  def _handle(self, signum, frame) -> None:
    del frame
    if signum == signal.SIGINT and self.requested:  # a second Ctrl-C: stop now, without the save
      raise KeyboardInterrupt
    self.requested = True
    self.signal_name = self.signal_name or signal.Signals(signum).name

  def agreed(self) -> bool:
    """Whether to stop after the step just dispatched: one process, its flag; several, the OR of every
    process's flag as of the previous step (the same answer on all of them). Call once per step."""
    if self._any is None:
      return self.requested
    seen, self._pending = self._pending, self._any(self.requested)
    return seen is not None and bool(jax.device_get(seen))


def any_process(mesh: Any) -> Callable[[bool], jax.Array]:
  """flag -> replicated int32 scalar (not fetched), 1 if any process passed True: one tiny all-reduce."""
  sharding, local = mesh_lib.batch_sharding(mesh), jax.local_device_count()
  reduce = jax.jit(lambda flags: flags.max(), out_shardings=mesh_lib.replicated(mesh))
  return lambda flag: reduce(jax.make_array_from_process_local_data(sharding, np.full((local,), flag, np.int32)))


def check_workdir(workdir: str) -> None:
  """Creates `workdir` (local, or a gs:// URL) and proves it writable, so a bad path fails in one line before
  any work."""
  storage.check_writable(workdir)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs every stage of `config.stages`; returns (and writes to workdir/metrics.json) their metrics.

  The config is saved as `workdir/config.json`, so the tools that read the workdir later know how it was
  trained: once a stage's checkpoints are known to match it (a config that does not match them stops with one
  line and leaves the workdir's config.json as it was). A rerun with a changed config logs the changed fields
  at the start and keeps the previous file as `config.<UTC time>.json` (`save_config_keeping_previous`).

  A local workdir is locked for the run (`storage.workdir_lock`, process 0): a second run into it stops with
  one line (InputError) before any work.
  """
  # Before the workdir is made, so that a refused run leaves nothing behind: the config, the own datasets'
  # class lists (`with_classes_from_data`), that every dataset is built, and the weights `init.source` names.
  from overfeat_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  check_config(config)
  config = with_classes_from_data(config)
  for stage in config.stages:
    data = config_files.stage_config(config, stage).data
    pipeline.check_built(data.name, data.data_dir)
  source = initial_weights(config)
  check_workdir(workdir)
  lock = storage.workdir_lock(workdir) if jax.process_index() == 0 else contextlib.nullcontext()
  with lock:
    return _train_and_evaluate(config, workdir, source)


def check_config(config: ml_collections.ConfigDict) -> None:
  """Every check that needs neither data nor the workdir: the stage list, each stage's settings
  (`config_files.settings_from_config`: names, sizes, counts, dtype) and input settings.

  Raises:
    InputError: one line naming what is wrong.
  """
  if len(set(config.stages)) != len(config.stages):  # config_flags appends a tuple flag given twice
    raise InputError(f'config.stages names a stage twice: {tuple(config.stages)} (a --config.stages flag given '
                     'twice is appended to itself: give it once)')
  for stage in config.stages:
    config_files.settings_from_config(config, stage)
    inputs.check(config_files.input_settings(config_files.stage_config(config, stage), stage))


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                        source: transfer.Source | None) -> dict[str, Any]:
  # Every stage's settings (e.g. its input sizes) read and checked once, before the first stage trains.
  settings = {stage: config_files.settings_from_config(config, stage) for stage in config.stages}
  changes = warn_config_changes(config, workdir)

  def ready() -> None:  # each stage, once its checkpoints restored; the previous config.json is kept once
    nonlocal changes
    save_config_keeping_previous(config, workdir, changes)
    changes = []

  results, previous = {}, None
  for stage in config.stages:
    cfg, task = config_files.stage_config(config, stage), tasks.make(settings[stage], previous)
    if previous is None and source is not None:  # the first stage starts from `config.init`'s weights
      task = transfer.initialise(task, source, layers=cfg.init.layers, freeze=cfg.init.freeze)
    if task.warm_start is None and task.cold_start:
      logging.warning(task.cold_start)
    results[stage], previous = run_stage(task, cfg, os.path.join(workdir, stage), ready=ready)
    if results[stage].get('preempted'):
      break
  if jax.process_index() == 0:
    storage.write_json_atomic(storage.path(workdir) / 'metrics.json', results)
  return results


def config_changes(old: dict[str, Any], new: dict[str, Any], prefix: str = '') -> list[str]:
  """`field: old -> new` for every (nested, dotted) field whose value differs between two configs as saved in
  config.json (`old` read back from JSON, `new` a `ConfigDict.to_dict()`: tuples and lists compare equal); a
  field only one of them has shows `<absent>`."""
  changes = []
  for key in sorted(set(old) | set(new)):
    a, b = old.get(key, '<absent>'), new.get(key, '<absent>')
    if isinstance(a, dict) and isinstance(b, dict):
      changes += config_changes(a, b, f'{prefix}{key}.')
    elif _as_json(a) != _as_json(b):
      changes.append(f'{prefix}{key}: {a!r} -> {b!r}')
  return changes


def _as_json(value: Any) -> Any:
  return json.loads(json.dumps(value, default=str))


def _saved_config_changes(config: ml_collections.ConfigDict, workdir: str) -> list[str]:
  """The changes from the workdir's config.json (none if it has none) to `config`; an unreadable file is one
  change (it is kept too)."""
  try:
    saved = config_files.load_config(workdir)
  except InputError as e:
    return [f'the previous config.json is unreadable ({e})']
  return [] if saved is None else config_changes(saved.to_dict(), config.to_dict())


def warn_config_changes(config: ml_collections.ConfigDict, workdir: str) -> list[str]:
  """Logs a warning (process 0) naming every field that differs from the config the workdir was trained with.

  Changes that make a checkpoint unusable (the model, the classes) are refused by the restore; the others
  (steps, learning rate, cadence, data) apply from the resumed step on."""
  changes = _saved_config_changes(config, workdir) if jax.process_index() == 0 else []
  if changes:
    logging.warning('the config differs from %s (the run continues with the new values; the old file is kept '
                    'as config.<time>.json): %s', storage.path(workdir) / config_files.CONFIG_FILE,
                    '; '.join(changes))
  return changes


def save_config_keeping_previous(config: ml_collections.ConfigDict, workdir: str,
                                 changes: list[str] | None = None) -> None:
  """`config_files.save_config`, after copying a different previous config.json to `config.<UTC time>.json`
  (e.g. config.20261130T001500Z.json), so how the earlier steps were trained stays on record. `changes`: what
  `warn_config_changes` found (read again from the workdir when None)."""
  if changes is None:
    changes = _saved_config_changes(config, workdir) if jax.process_index() == 0 else []
  if jax.process_index() == 0 and changes:
    old = storage.path(workdir) / config_files.CONFIG_FILE
    stamp = time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())
    try:
      previous = old.read_bytes()
    except OSError as e:  # e.g. no read permission: replacing it would lose the record of the earlier steps
      raise InputError(f'cannot keep the previous config {old} ({storage.reason(e)}): make it readable or move it '
                       'away') from None
    storage.write_atomic(storage.path(workdir) / f'config.{stamp}.json', previous)
  config_files.save_config(config, workdir)


def stage_task(config: ml_collections.ConfigDict, stage: str, previous_params: Any = None) -> tuple[Any, Task]:
  """(the stage's config, its Task): the task built through the registry from the stage's typed settings
  (`config_files.settings_from_config`, read here once), with the previous stage's params if any. The
  trainer and the pre-flight build their tasks here.

  Raises:
    InputError: a stage the registry does not have.
  """
  if stage not in TASKS:
    raise InputError(f'unknown stage {stage!r} in config.stages; available: {sorted(TASKS)}')
  settings = config_files.settings_from_config(config, stage)
  return config_files.stage_config(config, stage), tasks.make(settings, previous_params)


def with_classes_from_data(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config` itself, or with `num_classes = 0` replaced by the class count of its own-data datasets; a
  positive `num_classes` must be that count.

  Own data (docs/own_data.md) has as many classes as its builder found. The stages of a run share one class
  list (the detection stage extends the classifier's outputs by a background class), so every own-data dataset
  the stages read must have the same class names in the same order, and a stage on the embedded data the same
  count (the shipped recipe: the embedded classifier, then detection on its pictures written as a VOC folder).
  Checked before any training: a 10-class embedded classification stage under a 3-class own detection stage
  trained the classifier with 3 outputs on labels up to 9 (a NaN loss after minutes: field case), and two own
  datasets with the same classes in another order swapped their labels silently. So was the embedded config's
  `num_classes = 10` over a 2-class own dataset: a 10-way network whose predictions named classes 2-9 that do
  not exist (field case); with `num_classes = 1` the labels past it made the loss non-finite at step 0.

  Raises:
    InputError: no stage reads own data; the stages' class lists differ; a positive `num_classes` differs from
      an own dataset's class count (one line naming both and the fix).
  """
  from overfeat_jax.data import folders  # pylint: disable=g-import-not-at-top
  from overfeat_jax.data import embedded as embedded_lib  # pylint: disable=g-import-not-at-top
  from overfeat_jax.data.build import OWN_DATA  # pylint: disable=g-import-not-at-top
  own, embedded = {}, {}
  for stage in config.stages:
    data = config_files.stage_config(config, stage).data
    if data.name.split('/')[0] in OWN_DATA:
      own[stage] = (data.name, folders.class_names(folders.dataset_dir(data.data_dir, data.name)))
    elif data.name.startswith('embedded'):
      embedded[stage] = (data.name, int(data.options.get('num_classes', embedded_lib.NUM_CLASSES)))
  if config.num_classes != 0:
    for stage, (name, names) in own.items():
      if len(names) != config.num_classes:
        raise InputError(f'num_classes = {config.num_classes}, but the {stage} stage reads {name} with '
                         f'{len(names)} classes ({_some(names)}): set --config.num_classes=0 (the count from '
                         f'the data) or {len(names)}')
    return config
  if not own:
    raise InputError('num_classes = 0 (from the data) needs a stage that reads own data (voc_folder/NAME, '
                     'coco_json/NAME, image_folder/NAME)')
  first, (first_name, names) = next(iter(own.items()))
  fix = ('a run\'s stages share one class list: build the datasets with the same --classes file, or train the '
         'own-data stage alone from a trained network (--config.stages=\'("detection",)\' '
         '--config.init.source=WORKDIR_OR_EXPORT: docs/own_data.md, "Starting from trained weights")')
  for stage, (name, other) in own.items():
    if other != names:
      raise InputError(f'the {first} stage reads {first_name} with classes {names} and the {stage} stage '
                       f'{name} with {other}; {fix}')
  for stage, (name, count) in embedded.items():
    if count != len(names):
      raise InputError(f'the {stage} stage reads {name} ({count} classes) and the {first} stage {first_name} '
                       f'({len(names)} classes: {_some(names)}); {fix}')
  resolved = config.copy_and_resolve_references()  # a new ConfigDict, locked like `config`
  resolved.num_classes = len(names)
  return resolved


def _some(names: list[str]) -> str:
  """The first five class names, for a message."""
  return ', '.join(names[:5]) + (', ...' if len(names) > 5 else '')


def initial_weights(config: ml_collections.ConfigDict) -> transfer.Source | None:
  """The trained weights `config.init.source` names (`checkpoint.transfer`), read and checked before any
  training; None when the first stage starts from random initialisation."""
  init = config.get('init')
  if init is None or not init.source:
    return None
  geometry = get_geometry(config.model.geometry, config.model.width_divisor)
  return transfer.load_source(init.source, geometry=geometry, stage=init.stage, step=init.step, best=init.best,
                              metric=init.metric)


@dataclasses.dataclass(frozen=True)
class Cadence:
  """When the loop logs, evaluates and saves (in steps; 0 = never evaluate during training), the global batch
  size, and whether a non-finite step is skipped (True) or stops the run (False)."""
  batch_size: int
  log_every: int
  eval_every: int
  checkpoint_every: int
  skip_nonfinite: bool

  @classmethod
  def from_config(cls, cfg: ml_collections.ConfigDict) -> 'Cadence':
    return cls(cfg.batch_size, cfg.log_every_steps, cfg.eval.every_steps, cfg.checkpoint_every_steps,
               cfg.skip_nonfinite)


@dataclasses.dataclass
class Run:
  """What one stage's training needs, built from the config by `run_stage` (everything below takes values).

  `eval_batches(evaluation) -> (per-host batches, number of batches, global batch size)` reads the eval split.
  """
  task: Task
  programs: programs_lib.Programs
  writer: Writer
  manager: Any
  total_steps: int
  cadence: Cadence
  eval_batches: Callable[[Any], tuple[Any, int, int]]

  @property
  def mesh(self) -> Any:
    return self.programs.mesh


def steps_for(cfg: ml_collections.ConfigDict, num_records: int) -> tuple[int, int]:
  """(steps per epoch, total steps): `num_train_steps` if positive, else `num_epochs` epochs. `cfg`'s counts
  were checked when its stage was read (`config_files.check_training_counts`, via `stage_task`)."""
  steps_per_epoch = num_records // cfg.batch_size
  if steps_per_epoch < 1:
    raise InputError(f'batch_size {cfg.batch_size} is larger than the {num_records} training records')
  total = cfg.num_train_steps if cfg.num_train_steps > 0 else int(round(cfg.num_epochs * steps_per_epoch))
  return steps_per_epoch, total


def build_optimizer(cfg: ml_collections.ConfigDict, task: Task, steps_per_epoch: int, total_steps: int,
                    shapes: Any = None):
  """(optax transformation, schedule) from `cfg.optimizer` and `cfg.schedule`; `shapes`, the task's parameter
  shapes (the trainable mask's tree), are traced from `task.init_params` when not given."""
  s = cfg.schedule
  peak = optim.scaled_learning_rate(s.base_lr, cfg.batch_size, s.base_batch_size)
  schedule = optim.make_schedule(s.kind, peak, steps_per_epoch=steps_per_epoch, total_steps=total_steps,
                                 decay_epochs=tuple(s.decay_epochs), decay_factor=s.decay_factor,
                                 warmup_steps=int(s.warmup_epochs * steps_per_epoch))
  if shapes is None:
    shapes = jax.eval_shape(task.init_params, jax.random.key(0))
  tx = optim.make_optimizer(cfg.optimizer.name, schedule, momentum=cfg.optimizer.momentum,
                            weight_decay=cfg.optimizer.weight_decay, trainable_mask=task.trainable_mask(shapes))
  return tx, schedule


def stage_programs(cfg: ml_collections.ConfigDict, task: Task, mesh: Any,
                   num_train_records: int) -> tuple[programs_lib.Programs, int]:
  """(the stage's jitted programs on `mesh`, its total steps): the one wiring of the config to
  `train.programs.build`, used by `run_stage` and by the TPU pre-flight (`train.preflight`), so the pre-flight
  compiles what the run compiles. `num_train_records` sets the schedule's boundaries (not the programs)."""
  steps_per_epoch, total = steps_for(cfg, num_train_records)
  optimizer = lambda shapes: build_optimizer(cfg, task, steps_per_epoch, total, shapes)
  return programs_lib.build(task, mesh, optimizer, skip_nonfinite=cfg.skip_nonfinite, seed=cfg.seed), total


def eval_reader(data: InputSettings) -> Callable[[Any], tuple[Any, int, int]]:
  """evaluation -> its batches of `data.eval_split` (`inputs.eval_batches`); the split is opened at the first
  evaluation."""
  source = functools.cache(lambda: inputs.open_split(data, data.eval_split))
  return lambda evaluation: inputs.eval_batches(data, source(), evaluation.view, evaluation.size)


def run_stage(task: Task, cfg: ml_collections.ConfigDict, workdir: str,
              ready: Callable[[], None] = lambda: None) -> tuple[dict, Any]:
  """Trains (or resumes) one stage to `total_steps`, evaluates it; returns (metrics, final params). `ready()` is
  called once the stage's checkpoints restored (or there were none), before training."""
  storage.makedirs(workdir)
  mesh = mesh_lib.make_mesh()
  data = config_files.input_settings(cfg, task.name)
  source = inputs.open_split(data, data.train_split)
  programs, total = stage_programs(cfg, task, mesh, len(source))
  manager = ckpt.make_manager(os.path.join(workdir, 'checkpoints'), max_to_keep=cfg.max_to_keep,
                              best_metric=task.best_metric)
  writer = Writer(workdir)
  iterator = inputs.train_iterator(data, source)
  restored = ckpt.restore_latest(manager, programs.state)
  if restored is None:
    state, start = programs.initial_state(jax.random.key(cfg.seed)), 0
  else:
    start, state, meta = restored
    iterator.set_state(meta['data'])
    writer.info('Resumed %s from step %d (%s).', task.name, start, manager.directory)
  ready()
  run = Run(task, programs, writer, manager, total, Cadence.from_config(cfg), eval_reader(data))
  try:
    state, info = train(run, state, iterator, start)
    if not info.get('preempted'):
      info.update(final_evaluation(run, state, info))
      info.pop('data_state', None)
  finally:
    with checkpoint_writes(manager):
      manager.wait_until_finished()
      manager.close()
    writer.close()
  return info, state.params


def check_finite(run: Run, state: state_lib.TrainState) -> None:
  """Raises (one line, naming the step) once a non-finite step froze the state; a scalar fetch, no more."""
  first = int(jax.device_get(state.first_nonfinite))
  if first >= 0 and not run.cadence.skip_nonfinite:
    raise NonFiniteLossError(
        f'{run.task.name}: the loss or a gradient became non-finite at step {first}; stopped, the last '
        f'checkpoint before it is intact (lower the learning rate, or set config.skip_nonfinite=True)')


def save_checkpoint(run: Run, state: state_lib.TrainState, iterator: Any,
                    metrics: dict[str, float] | None = None) -> int:
  """Saves state + iterator position at the state's step (never a state past a non-finite step)."""
  check_finite(run, state)
  step = int(jax.device_get(state.step))
  with checkpoint_writes(run.manager):
    ckpt.save(run.manager, step, state, {'task': run.task.name}, metrics, data=iterator.get_state())
  return step


def log_train(run: Run, progress: Progress, step: int, metrics: dict, state: state_lib.TrainState) -> None:
  """Fetches the step's metrics (the loop's only regular host sync), logs them, stops on non-finite."""
  values = {k: float(v) for k, v in jax.device_get(metrics).items()}
  line, rate = progress.line(step)
  values['images_per_second'] = rate
  values['nonfinite_steps'] = float(jax.device_get(state.nonfinite_count))
  run.writer.info('%s | loss %.4f | lr %.3g', line, values['loss'], values['lr'])
  run.writer.scalars(step, values, prefix='train/')
  check_finite(run, state)


def device_batches(run: Run) -> Callable[[dict], Any]:
  """The prefetcher's per-batch conversion: the host batch (already at its step's training scale, chosen by
  the input pipeline: `data.preprocess.scale_of_batch`) -> the global device array."""
  sharding = mesh_lib.batch_sharding(run.mesh)
  return lambda batch: mesh_lib.to_global(batch, sharding)


def train(run: Run, state: state_lib.TrainState, iterator: Any, start: int) -> tuple[Any, dict]:
  """Steps from `start` to `run.total_steps`: logs, evaluates and checkpoints on schedule; SIGTERM-safe."""
  from overfeat_jax.data.pipeline import Prefetcher  # pylint: disable=g-import-not-at-top
  cadence, info = run.cadence, {'preempted': False, 'start_step': start, 'total_steps': run.total_steps}
  if start >= run.total_steps:
    return state, {**info, 'saved_at': start}
  batches = Prefetcher(iterator, device_batches(run))
  progress, t0, saved_at = Progress(run.total_steps, cadence.batch_size, start), time.perf_counter(), None
  try:
    with Preemption(run.mesh) as preemption:
      for step in range(start + 1, run.total_steps + 1):
        batch = next(batches)
        with jax.transfer_guard('disallow'), compile_timer(run.writer, run.task.name, step == start + 1):
          state, metrics = run.programs.train_step(state, batch)
        log_now = step % cadence.log_every == 0 or step == run.total_steps
        if log_now:
          log_train(run, progress, step, metrics, state)
        if step == start + 1:
          progress.start_clock(step)  # compiled (the call returns once it is); later ETAs leave the compile out
        if preemption.agreed():
          saved_at = save_checkpoint(run, state, batches)
          name = preemption.signal_name or 'SIGTERM'  # several processes: the signal may have reached another
          run.writer.info('%s: saved step %d, stopping.', name, step)
          return state, {**info, 'preempted': True, 'saved_at': saved_at, 'signal': name}
        if step == run.total_steps:
          break
        if cadence.eval_every > 0 and step % cadence.eval_every == 0:
          check_finite(run, state)
          eval_metrics = evaluate_all(run, state.params)
          run.writer.scalars(step, eval_metrics, prefix='eval/')
          saved_at = save_checkpoint(run, state, batches, eval_metrics)
        elif step % cadence.checkpoint_every == 0:
          saved_at = save_checkpoint(run, state, batches)
      info['data_state'] = batches.get_state()
  finally:
    batches.close()
  info['train_seconds'] = time.perf_counter() - t0
  return state, {**info, 'saved_at': saved_at}


@contextlib.contextmanager
def compile_timer(writer: Writer, stage: str, first: bool):
  """Around the first train step (`first`), whose call compiles it (minutes on a CPU): one line before, one
  with the time it took after, so a long compile does not look like a hang. Other steps: nothing."""
  if not first:
    yield
    return
  writer.info('Compiling the %s train step ...', stage)
  t0 = time.perf_counter()
  yield
  writer.info('Compiled the %s train step in %.1f s.', stage, time.perf_counter() - t0)


def evaluate_all(run: Run, params: Any) -> dict[str, float]:
  """Every evaluation of the task on the eval split; logged and written to TensorBoard."""
  results = {}
  for evaluation in run.task.evaluations:
    batches, num_batches, batch_size = run.eval_batches(evaluation)
    evaluator = evaluate.Evaluator(evaluation, run.mesh, run.writer, run.cadence.log_every,
                                   step=run.programs.eval_steps[evaluation.name])
    results.update(evaluator.run(params, batches, num_batches, batch_size))
  run.writer.info('eval: %s', ', '.join(f'{k} {v:.4f}' for k, v in sorted(results.items())))
  return results


def final_evaluation(run: Run, state: state_lib.TrainState, info: dict) -> dict[str, Any]:
  """Evaluates the final state and saves it (with its metrics) unless that step is already saved; the returned
  `saved_at` is that final step (metrics.json said the last in-loop save, e.g. 4 of 6: field case)."""
  metrics = evaluate_all(run, state.params)
  step = int(jax.device_get(state.step))
  run.writer.scalars(step, metrics, prefix='eval/')
  if info.get('saved_at') != step:
    check_finite(run, state)
    with checkpoint_writes(run.manager):
      ckpt.save(run.manager, step, state, {'task': run.task.name}, metrics, data=info['data_state'])
  return {'final_step': step, 'saved_at': step, 'nonfinite_steps': int(jax.device_get(state.nonfinite_count)),
          **metrics}
