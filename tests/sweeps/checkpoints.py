"""Test helper: training workdirs with real orbax checkpoints of tiny networks, written by the trainer's manager."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from overfeat_jax.checkpoint import manager as ckpt
from overfeat_jax.checkpoint.export import NetworkSpec, abstract_params
from overfeat_jax.train import state as state_lib

# The smoke config's network: `small` at width / 32 (42 k parameters), 10 classes.
GEOMETRY, DIVISOR, CLASSES = 'small', 32, 10


def make_params(seed: int, *, num_classes: int = CLASSES, regressor_outputs: int = 0, divisor: int = DIVISOR):
  """He-scaled random parameters of the network's exact shapes, drawn with numpy.

  Why not `model.init`: on a loaded 2-core machine compiling the init takes tens of seconds; the shapes come
  from `jax.eval_shape` (no compile) and numpy fills them in milliseconds. With a regressor (hidden 16, 8) the
  tree is {'backbone', 'regressor'}, as the localization stage saves it.
  """
  spec = NetworkSpec(GEOMETRY, divisor, num_classes, regressor_outputs=regressor_outputs,
                     regressor_hidden=(16, 8) if regressor_outputs else ())
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    if path[-1].key == 'bias':
      return (0.05 * rng.standard_normal(leaf.shape)).astype(np.float32)
    fan_in = int(np.prod(leaf.shape[:-1]))
    return (rng.standard_normal(leaf.shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

  return jax.tree_util.tree_map_with_path(fill, abstract_params(spec))


def write_checkpoint(workdir: str, stage: str, params, step: int = 5) -> str:
  """Saves a full TrainState (params + Adam state) at `step` in workdir/<stage>/checkpoints, as the loop does."""
  state = state_lib.create(params, optax.adam(1e-3), jax.random.key(0))
  state = state.replace(step=jnp.asarray(step, jnp.int32))
  manager = ckpt.make_manager(os.path.join(workdir, stage, 'checkpoints'), enable_async=False)
  ckpt.save(manager, step, state, {'data': '', 'task': stage})
  manager.wait_until_finished()
  manager.close()
  return workdir
