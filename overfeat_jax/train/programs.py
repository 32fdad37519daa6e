"""The jitted programs of one training stage on one mesh, built in one place for the trainer and the pre-flight.

Why: `loop.run_stage` runs these programs and the TPU pre-flight (`train.preflight`, `parallel.aot`) compiles
them ahead of time on abstract arguments; built twice, the two could silently differ (another donation,
sharding or optimizer), so the pre-flight would vouch for a program the run never compiles. `build` is the
only place they are made (tests/train/test_programs.py compares the lowered text of both sides).

  build(task, mesh, optimizer, skip_nonfinite=..., seed=...) -> Programs
    state         the abstract TrainState (`jax.ShapeDtypeStruct`s, replicated): ONE trace of `task.init_params`
    train_step    `(state, batch) -> (state, metrics)`: state replicated and donated, batch split on 'data'
    eval_steps    evaluation name -> `(params, batch) -> per-example outputs and the batch's mask`, replicated
    initial_state rng -> TrainState on the devices: `init_params(rng)` compiled from the rng alone, then the
                  task's `warm_start` (the previous stage's or `config.init`'s trained weights) copied in OUTSIDE
                  jit, then the optimizer state. Weights closed over by a jitted init become constants of the
                  program (a program as large as the network, compiled slowly); as arguments they are not.

The abstract batch of a run's input pipeline (`train_batch`, `eval_batch`) is derived from the preprocessing
functions themselves on a blank record, so its fields, shapes and dtypes are those of the real batches.
"""

import dataclasses
from typing import Any, Callable

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding

from overfeat_jax.data import preprocess
from overfeat_jax.parallel import mesh as mesh_lib
from overfeat_jax.tasks.task import Task
from overfeat_jax.train import evaluate
from overfeat_jax.train import state as state_lib
from overfeat_jax.train import step as step_lib

Structure = dict[str, tuple[tuple[int, ...], np.dtype]]  # field -> (shape of one example, dtype)
# parameter shapes (a tree of ShapeDtypeStruct) -> (optax transformation, learning-rate schedule)
Optimizer = Callable[[Any], tuple[optax.GradientTransformation, Callable]]


@dataclasses.dataclass(frozen=True)
class Programs:
  """One stage's jitted programs for `mesh` (see the module docstring); built by `build`.

  Attributes:
    mesh: the 1-D 'data' mesh they are compiled for.
    state: abstract TrainState, every leaf a `jax.ShapeDtypeStruct` with the replicated sharding.
    tx, schedule: the optimizer and its learning-rate schedule (step -> float).
    train_step: jitted `(state, batch) -> (state, metrics)`.
    eval_steps: evaluation name -> jitted `(params, batch) -> {name: [B, ...]}` including the batch's `mask`.
    init_params: jitted `rng -> params`, replicated; a function of the rng alone.
    create_state: jitted `(params, rng) -> TrainState` at step 0, replicated.
    warm_start: the task's `params -> params` run between the two (None: none).
  """
  mesh: Mesh
  state: Any
  tx: optax.GradientTransformation
  schedule: Callable
  train_step: Callable
  eval_steps: dict[str, Callable]
  init_params: Callable
  create_state: Callable
  warm_start: Callable[[Any], Any] | None = None

  def initial_state(self, rng: jax.Array) -> state_lib.TrainState:
    """The state a fresh run starts from, built on the devices (replicated); `rng` a typed key."""
    params = self.init_params(rng)
    if self.warm_start is not None:
      params = replicate(self.warm_start(params), mesh_lib.replicated(self.mesh))
    return self.create_state(params, rng)

  def train_args(self, structure: Structure, global_batch: int) -> tuple[Any, dict[str, jax.ShapeDtypeStruct]]:
    """Abstract `(state, batch)` of `train_step` for a global batch of `structure` examples."""
    return self.state, abstract_batch(structure, global_batch, self.mesh)

  def eval_args(self, structure: Structure, global_batch: int) -> tuple[Any, dict[str, jax.ShapeDtypeStruct]]:
    """Abstract `(params, batch)` of an eval step for a global batch of `structure` examples."""
    return self.state.params, abstract_batch(structure, global_batch, self.mesh)


def build(task: Task, mesh: Mesh, optimizer: Optimizer, *, skip_nonfinite: bool = False,
          seed: int = 0) -> Programs:
  """The programs of `task` on `mesh`; `optimizer(parameter shapes) -> (tx, schedule)` (the shapes give the
  trainable mask). `seed` only names the key the abstract state is traced with (shapes do not depend on it)."""
  rep = mesh_lib.replicated(mesh)
  key = jax.random.key(seed)
  shapes = jax.eval_shape(task.init_params, key)  # the one trace of the network's init
  tx, schedule = optimizer(shapes)
  create = lambda params, rng: state_lib.create(params, tx, rng)
  state = abstract_tree(jax.eval_shape(create, shapes, key), rep)
  train_step = step_lib.jit_train_step(mesh, loss_fn=task.loss_fn, tx=tx, schedule=schedule,
                                       skip_nonfinite=skip_nonfinite)
  eval_steps = {e.name: step_lib.jit_eval_step(mesh, evaluate.with_mask(e.eval_step)) for e in task.evaluations}
  return Programs(mesh, state, tx, schedule, train_step, eval_steps,
                  init_params=jax.jit(task.init_params, out_shardings=rep),
                  create_state=jax.jit(create, out_shardings=rep), warm_start=task.warm_start)


def replicate(tree: Any, sharding: NamedSharding) -> Any:
  """Every leaf of `tree` as a global array with `sharding`: device arrays that have it are kept, host values
  (the same on every process: loaded weights) are placed with `make_array_from_callback` (multi-host safe)."""
  def put(x):
    if isinstance(x, jax.Array) and x.sharding.is_equivalent_to(sharding, x.ndim):
      return x
    value = np.asarray(x)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])
  return jax.tree.map(put, tree)


def abstract_tree(tree: Any, sharding: Any) -> Any:
  """Shapes and dtypes of `tree` with `sharding`: an argument that is never allocated."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def example_structure(example: dict[str, Any]) -> Structure:
  """(shape, dtype) of each field of one host example."""
  return {k: (np.shape(v), np.asarray(v).dtype) for k, v in example.items()}


def _blank_record(side: int) -> dict[str, Any]:
  return {'image': np.zeros((side, side, 3), np.uint8), 'label': 0, 'boxes': np.zeros((0, 4), np.float32),
          'box_labels': np.zeros((0,), np.int64)}


def train_structure(*, crop_size: int, resize_smaller: int | tuple[int, int] | None, max_boxes: int) -> Structure:
  """The fields of one training example exactly as the input pipeline makes them (`preprocess.train_example`
  on a blank record); sizes in pixels, `resize_smaller` None = no resize."""
  example = preprocess.train_example(_blank_record(crop_size), np.random.default_rng(0), crop_size=crop_size,
                                     resize_smaller=resize_smaller, max_boxes=max_boxes)
  return example_structure(example)


def eval_structure(*, view: str, size: int | tuple[int, int], max_boxes: int) -> Structure:
  """The fields of one evaluation example of `view` (`preprocess.eval_example`) plus the pipeline's `mask`."""
  side = size if isinstance(size, int) else max(size)
  example = preprocess.eval_example(_blank_record(side), view=view, size=size, max_boxes=max_boxes)
  return {**example_structure(example), 'mask': ((), np.dtype(np.int32))}


def abstract_batch(structure: Structure, global_batch: int, mesh: Mesh) -> dict[str, jax.ShapeDtypeStruct]:
  """A global batch of `global_batch` examples, split over the mesh's 'data' axis (never allocated).

  Raises:
    InputError: the batch does not split evenly over the mesh's devices (the run's own check).
  """
  mesh_lib.local_batch_size(global_batch, mesh)
  sharding = mesh_lib.batch_sharding(mesh)
  return {k: jax.ShapeDtypeStruct((global_batch,) + shape, dtype, sharding=sharding)
          for k, (shape, dtype) in structure.items()}
