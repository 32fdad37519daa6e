"""One orbax `CheckpointManager` factory, and restore that survives incomplete or corrupt checkpoints.

A checkpoint is `Composite(state=<the TrainState pytree>, meta=<JSON: input iterator position, config>)`, so
a restarted run continues on exactly the next batch. Retention: the latest `max_to_keep` steps, plus the one
with the best (lowest) validation metric, through orbax's preservation policies
(`AnyPreservationPolicy([LatestN, BestN])`): one manager, one directory, no second copy. Checkpoints saved
without metrics (between evaluations) compete only for the latest-K slots.

Writes are atomic: orbax writes `<step>.orbax-checkpoint-tmp-*` and renames it to `<step>` once complete, so a
run killed mid-save leaves a tmp directory that is never listed as a step (and is cleaned up on the next
start). A finished checkpoint damaged afterwards (a truncated or deleted file) fails to restore: `restore_latest`
warns with its path, moves it aside to `<step>.corrupt` (kept for inspection, no longer a step, so the resumed
run can save that step again) and falls back to the previous step.
"""

import os
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers as ocm


def make_manager(directory: str, *, max_to_keep: int = 2, best_metric: str | None = None,
                 enable_async: bool = True) -> ocp.CheckpointManager:
  """The run's checkpoint manager (async saves; the loop decides when to save).

  Args:
    directory: absolute or relative path of the checkpoint directory (created if missing).
    max_to_keep: how many of the latest steps to keep.
    best_metric: key of the metrics dict passed to `save(..., metrics=)` whose minimum is also kept.
  """
  policies = [ocm.LatestN(n=max_to_keep)]
  if best_metric:
    policies.append(ocm.BestN(get_metric_fn=lambda m: m[best_metric], reverse=True, n=1,
                              keep_checkpoints_without_metrics=False))
  options = ocp.CheckpointManagerOptions(
      preservation_policy=ocm.AnyPreservationPolicy(policies), enable_async_checkpointing=enable_async,
      create=True, cleanup_tmp_directories=True)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def save(manager: ocp.CheckpointManager, step: int, state: Any, meta: dict,
         metrics: dict[str, float] | None = None) -> None:
  """Starts an (async) save of `state` and the JSON-able `meta` at `step`; returns once arrays are copied."""
  args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
  manager.save(step, args=args, metrics=metrics, force=True)


def abstract_like(state: Any) -> Any:
  """Shape, dtype and sharding of every leaf: the restore target (arrays land on the right devices)."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)


def restore_latest(manager: ocp.CheckpointManager, abstract_state: Any,
                   warn: Callable[[str], None] = logging.warning) -> tuple[int, Any, dict] | None:
  """(step, state, meta) of the newest checkpoint that restores, or None if there is none.

  A checkpoint that fails to restore (a file missing or truncated inside it) is skipped with a warning naming
  its directory; the next older one is tried.
  """
  for step in sorted(manager.all_steps(), reverse=True):
    args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore())
    try:
      restored = manager.restore(step, args=args)
    except Exception as e:  # pylint: disable=broad-except  (orbax/tensorstore raise many types)
      path = os.path.join(str(manager.directory), str(step))
      warn(f'checkpoint {path} is incomplete or corrupt ({type(e).__name__}: {str(e)[:200]}); '
           f'moved to {quarantine(manager, step)}, falling back to the previous one')
      continue
    return step, restored.state, restored.meta
  return None


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


def restore_params(directory: str, step: int | None = None) -> tuple[int, Any]:
  """(step, params on this process's first device) of a run's checkpoint (latest by default).

  What a later stage or a tool starts from; works whatever topology saved it (e.g. two processes), because the
  restore target is built from the checkpoint's own metadata with a one-device sharding.
  """
  manager = make_manager(directory, enable_async=False)
  steps = manager.all_steps()
  if not steps:
    from overfeat_jax.errors import InputError  # pylint: disable=g-import-not-at-top
    raise InputError(f'no checkpoint in {directory}')
  step = max(steps) if step is None else step
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  with ocp.StandardCheckpointer() as reader:
    metadata = reader.metadata(os.path.join(str(manager.directory), str(step), 'state')).item_metadata
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), metadata)
  restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target),
                                                           meta=ocp.args.JsonRestore()))
  manager.close()
  return step, restored.state['params']
