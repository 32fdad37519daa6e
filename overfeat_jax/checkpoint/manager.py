"""One orbax `CheckpointManager` factory, and restore that survives incomplete or corrupt checkpoints.

A checkpoint is `Composite(state=<the TrainState pytree>, meta=<JSON: task name>, data=<input positions>)`,
so a restarted run continues on exactly the next batch. `data` is written by grain's orbax handler
(`grain.checkpoint.CheckpointSave`): one file per process, `data/process_<i>-of-<n>.json`, each holding that
process's own iterator position (every host reads its own shard). A run restores only on the same process
count; another count stops with one line naming both (the shards would differ). Retention: the latest `max_to_keep` steps, plus the one
with the best (lowest) validation metric, through orbax's preservation policies
(`AnyPreservationPolicy([LatestN, BestN])`): one manager, one directory, no second copy. Checkpoints saved
without metrics (between evaluations) compete only for the latest-K slots.

Writes are atomic: orbax writes `<step>.orbax-checkpoint-tmp-*` and renames it to `<step>` once complete, so a
run killed mid-save leaves a tmp directory that is never listed as a step (and is cleaned up on the next
start). Before restoring, `restore_latest` compares the checkpoint's tree structure and shapes (its metadata)
with the run's abstract state: a mismatch (another model config on the same workdir) stops with one line naming
the first differing parameter, and no checkpoint is touched. A transient I/O error (OSError) is retried. Only a
matching checkpoint that fails to read or decode (a truncated or deleted file) is moved aside to
`<step>.corrupt` (kept for inspection, no longer a step, so the resumed run can save that step again), with a
warning naming it, and the previous step is tried.
"""

import logging as std_logging
import os
import re
import time
from typing import Any, Callable

import grain.checkpoint
import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers as ocm

from overfeat_jax.errors import InputError

IO_RETRIES = (0.5, 1.0, 2.0)  # seconds before each retry of a checkpoint read that raised OSError
_PROCESS_FILE = re.compile(r'process_(\d+)-of-(\d+)\.json$')  # grain's per-process file name

from overfeat_jax import storage

# Saves between evaluations carry no metrics on purpose (they compete only for the latest-K slots), but with a
# `best_fn` orbax logs this warning at every such save; it is dropped here, and only this one message.
_NO_METRICS_WARNING = 'Requested `tracked_metric`; did not provide metrics.'


class _DropNoMetricsWarning(std_logging.Filter):

  def filter(self, record) -> bool:
    return record.getMessage() != _NO_METRICS_WARNING


def _quiet_no_metrics_warning() -> None:
  """Installs the filter on absl's logger (orbax logs through absl), once per process."""
  logger = logging.get_absl_logger()
  if not any(isinstance(f, _DropNoMetricsWarning) for f in logger.filters):
    logger.addFilter(_DropNoMetricsWarning())


def make_manager(directory: str, *, max_to_keep: int = 2, best_metric: str | None = None,
                 enable_async: bool = True) -> ocp.CheckpointManager:
  """The run's checkpoint manager (async saves; the loop decides when to save).

  Args:
    directory: local path (absolute or relative) or URL (gs://bucket/run/...) of the checkpoint directory,
      created if missing; orbax/tensorstore get the URL unchanged.
    max_to_keep: how many of the latest steps to keep.
    best_metric: key of the metrics dict passed to `save(..., metrics=)` whose minimum is also kept.
  """
  policies = [ocm.LatestN(n=max_to_keep)]
  if best_metric:
    policies.append(ocm.BestN(get_metric_fn=lambda m: m[best_metric], reverse=True, n=1,
                              keep_checkpoints_without_metrics=False))
  # best_fn as well as the policy: without it orbax 0.12 writes no metrics into the checkpoint, so a restarted
  # run (or `checkpoint.transfer.best_step`) would not know which step was best.
  best = dict(best_fn=lambda m: m[best_metric], best_mode='min') if best_metric else {}
  if best_metric:
    _quiet_no_metrics_warning()
  options = ocp.CheckpointManagerOptions(
      preservation_policy=ocm.AnyPreservationPolicy(policies), enable_async_checkpointing=enable_async,
      create=True, cleanup_tmp_directories=True, **best)
  return ocp.CheckpointManager(storage.url(directory), options=options)


class Position:
  """One process's input position (a JSON string) in the shape grain's orbax handler saves and restores: the
  handler calls `get_state() -> bytes`, `set_state(bytes)` and `start_prefetch()`."""

  def __init__(self, state: str = ''):
    self.state = state

  def get_state(self) -> bytes:
    return self.state.encode()

  def set_state(self, state: bytes) -> None:
    self.state = state.decode()

  def start_prefetch(self) -> None:
    pass


def save(manager: ocp.CheckpointManager, step: int, state: Any, meta: dict,
         metrics: dict[str, float] | None = None, *, data: str | None = None) -> None:
  """Starts an (async) save of `state`, the JSON-able `meta` and this process's input position `data` (a JSON
  string, written by every process to its own file) at `step`; returns once arrays are copied."""
  items = {'state': ocp.args.StandardSave(state), 'meta': ocp.args.JsonSave(meta)}
  if data is not None:
    items['data'] = grain.checkpoint.CheckpointSave(Position(data))
  manager.save(step, args=ocp.args.Composite(**items), metrics=metrics, force=True)


def abstract_like(state: Any) -> Any:
  """Shape, dtype and sharding of every leaf: the restore target (arrays land on the right devices)."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)


def restore_latest(manager: ocp.CheckpointManager, abstract_state: Any,
                   warn: Callable[[str], None] = logging.warning) -> tuple[int, Any, dict] | None:
  """(step, state, meta) of the newest checkpoint that restores, or None if there is none.

  `meta['data']` is this process's own input position (its file in the checkpoint's `data` item). A matching
  checkpoint that fails to read or decode (a file missing or truncated inside it) is quarantined with a
  warning naming its directory, and the next older one is tried.

  Raises:
    InputError: the newest checkpoint's tree structure or shapes differ from `abstract_state` (the message
      names the first differing parameter and both shapes), it was saved by another number of processes, or a
      read kept raising OSError after `IO_RETRIES`. No checkpoint is touched in these cases.
  """
  for step in sorted(manager.all_steps(), reverse=True):
    where = epath.Path(manager.directory) / str(step)
    try:
      saved = _retrying(lambda: state_metadata(where), where)  # pylint: disable=cell-var-from-loop
    except InputError:
      raise
    except Exception as e:  # pylint: disable=broad-except  (orbax/tensorstore raise many types)
      _skip(manager, step, e, warn)
      continue
    check_matches(saved, abstract_state, where)
    has_data = _retrying(lambda: check_process_count(where), where)  # pylint: disable=cell-var-from-loop
    items = {'state': ocp.args.StandardRestore(abstract_state), 'meta': ocp.args.JsonRestore()}
    if has_data:
      items['data'] = grain.checkpoint.CheckpointRestore(Position())
    try:
      restored = _retrying(lambda: manager.restore(step, args=ocp.args.Composite(**items)), where)  # pylint: disable=cell-var-from-loop
    except InputError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      _skip(manager, step, e, warn)
      continue
    meta = dict(restored.meta or {})
    if has_data:
      meta['data'] = restored.data.state
    elif jax.process_count() > 1 and 'data' in meta:
      raise InputError(f'checkpoint {where} holds one input position for all processes (saved before '
                       'positions were per process); resume it with one process, or start a new --workdir')
    return step, restored.state, meta
  return None


def _skip(manager: ocp.CheckpointManager, step: int, error: Exception, warn: Callable[[str], None]) -> None:
  path = epath.Path(manager.directory) / str(step)
  warn(f'checkpoint {path} is incomplete or corrupt ({type(error).__name__}: {str(error)[:200]}); '
       f'moved to {quarantine(manager, step)}, falling back to the previous one')


def _retrying(read: Callable[[], Any], where: epath.Path) -> Any:
  """`read()`, retried after each delay of `IO_RETRIES` while it raises OSError (a transient storage error);
  a missing file (FileNotFoundError) is damage, not transient, and is raised at once."""
  for attempt, delay in enumerate((*IO_RETRIES, None)):
    try:
      return read()
    except FileNotFoundError:
      raise
    except OSError as e:
      if delay is None:
        raise InputError(f'reading checkpoint {where} failed {attempt + 1} times ({type(e).__name__}: '
                         f'{str(e)[:200]}); no checkpoint was changed, try again later') from e
      logging.warning('reading checkpoint %s: %s: %s; retrying in %.1f s', where, type(e).__name__, e, delay)
      time.sleep(delay)
  raise AssertionError('unreachable')


def state_metadata(step_dir: epath.Path) -> Any:
  """The tree of `ArrayMetadata` (shape, dtype) of a checkpoint's `state` item, read without its arrays."""
  return ocp.StandardCheckpointHandler().metadata(step_dir / 'state')


def _shapes(tree: Any) -> dict[str, tuple[int, ...] | None]:
  """{'params/conv1/kernel': shape, ...} of a metadata tree or an abstract state (orbax's serialized names)."""
  flat = ocp.tree.to_flat_dict(ocp.tree.serialize_tree(tree, keep_empty_nodes=True), sep='/')
  return {k: (tuple(v.shape) if hasattr(v, 'shape') else None) for k, v in flat.items()}


def check_matches(saved: Any, abstract_state: Any, where: epath.Path, *, what: str = 'this run',
                  hint: str = 'no checkpoint was changed: run with the config it was trained with, or another '
                  '--workdir') -> None:
  """Raises InputError naming the first parameter (`params/...` first) whose presence or shape differs between
  the checkpoint's metadata `saved` and the run's `abstract_state`, with both shapes; `what` names the
  expected network in the message and `hint` ends it."""
  theirs, ours = _shapes(saved), _shapes(abstract_state)
  if theirs == ours:
    return
  names = sorted(theirs.keys() | ours.keys(), key=lambda k: (not k.startswith('params/'), k))
  first = next(k for k in names if theirs.get(k, 'absent') != ours.get(k, 'absent'))
  shape = lambda d: str(d[first]) if first in d else 'absent'
  raise InputError(f'checkpoint {where} does not match {what}: {first} has shape {shape(theirs)} there and '
                   f'{shape(ours)} here (another model config?); {hint}')


def check_process_count(step_dir: epath.Path) -> bool:
  """Whether the checkpoint holds per-process input positions (`data/process_<i>-of-<n>.json`); raises
  InputError naming both counts if they were saved by another number of processes than this run's."""
  data = step_dir / 'data'
  if not data.exists():
    return False
  counts = sorted({int(m.group(2)) for f in data.iterdir() if (m := _PROCESS_FILE.match(f.name))})
  if jax.process_count() not in counts:
    saved = ' or '.join(map(str, counts)) or 'an unknown number of'
    raise InputError(f'checkpoint {step_dir} was saved by {saved} processes, this run has '
                     f'{jax.process_count()}: each process resumes its own input position, so resume with '
                     f'{saved} processes (or start a new --workdir)')
  return True


def quarantine(manager: ocp.CheckpointManager, step: int) -> str:
  """Renames checkpoint `step` to `<step>.corrupt[-N]` (process 0; all processes wait), so that it is no longer
  listed and a resumed run can write that step again; returns the new path."""
  src = epath.Path(manager.directory) / str(step)
  dst, n = src.with_name(f'{step}.corrupt'), 0
  while dst.exists():
    n += 1
    dst = src.with_name(f'{step}.corrupt-{n}')
  if jax.process_index() == 0:
    src.rename(dst)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f'quarantine_checkpoint_{step}')
  manager.reload()
  return str(dst)


def restore_params(directory: str, step: int | None = None, *, expected: Any = None,
                   what: str = 'this network') -> tuple[int, Any]:
  """(step, params on this process's first device) of a run's checkpoint (latest by default).

  What a later stage or a tool starts from; works whatever topology saved it (e.g. two processes), because the
  restore target is built from the checkpoint's own metadata with a one-device sharding.

  Args:
    directory: the checkpoint directory (`<workdir>/<stage>/checkpoints`).
    step: the step to read; None: the latest.
    expected: optional abstract params tree (e.g. `jax.eval_shape` of the task's init): the checkpoint's params
      must have its names and shapes (`check_matches`), checked from the metadata before any array is read.
    what: names the expected network in that error (e.g. "the detection stage's network").

  Raises:
    InputError: no checkpoint in `directory`; params that differ from `expected`.
  """
  manager = make_manager(directory, enable_async=False)
  steps = manager.all_steps()
  if not steps:
    raise InputError(f'no checkpoint in {directory}')
  step = max(steps) if step is None else step
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  metadata = state_metadata(epath.Path(manager.directory) / str(step))
  if expected is not None:
    check_matches({'params': metadata['params']}, {'params': expected}, epath.Path(manager.directory) / str(step),
                  what=what, hint='pass the checkpoints of that stage (<workdir>/<stage>/checkpoints)')
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), metadata)
  restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target),
                                                           meta=ocp.args.JsonRestore()))
  manager.close()
  return step, restored.state['params']
