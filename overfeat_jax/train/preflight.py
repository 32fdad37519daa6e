"""The trainer's programs for ahead-of-time compilation: the library half of `python -m overfeat_jax.preflight`.

The programs are the trainer's own jitted functions (`train.step.jit_train_step`, the evaluations'
`jit_eval_step`) with abstract arguments built as `loop.run_stage` builds the real ones (the state from
`eval_shape` of its init, a batch of the input pipeline's layout), so the pre-flight compiles what the run
compiles; `parallel.aot` compiles and reads them, `parallel.preflight_report` prints the result.
"""

import dataclasses
from typing import Any, Callable, Sequence

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from overfeat_jax.data import preprocess
from overfeat_jax.errors import InputError
from overfeat_jax.parallel import aot
from overfeat_jax.parallel import mesh as mesh_lib
from overfeat_jax.parallel import topology
from overfeat_jax.parallel.preflight_report import versions
from overfeat_jax.train import evaluate, loop
from overfeat_jax.train import state as state_lib
from overfeat_jax.train import step as step_lib

ILSVRC2012_TRAIN_RECORDS = 1_281_167  # only sets the schedule's boundaries, which do not change the program


def abstract_tree(tree: Any, sharding: Any) -> Any:
  """Shapes and dtypes of `tree` with `sharding`: an argument that is never allocated."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def example_structure(example: dict[str, Any]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
  """(shape, dtype) of each field of one host example."""
  return {k: (np.shape(v), np.asarray(v).dtype) for k, v in example.items()}


def train_example_structure(cfg: ml_collections.ConfigDict) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
  """The fields of one training example exactly as the input pipeline makes them (`preprocess.train_example`
  on a blank record), so the compiled step sees the run's batch layout."""
  record = {'image': np.zeros((cfg.crop_size, cfg.crop_size, 3), np.uint8), 'label': 0,
            'boxes': np.zeros((0, 4), np.float32), 'box_labels': np.zeros((0,), np.int64)}
  example = preprocess.train_example(record, np.random.default_rng(0), crop_size=cfg.crop_size,
                                     resize_smaller=cfg.resize_smaller or None, max_boxes=cfg.max_boxes)
  return example_structure(example)


def eval_example_structure(cfg: ml_collections.ConfigDict, view: str,
                           size: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
  """The fields of one evaluation example of `view` (`preprocess.eval_example`) plus the pipeline's `mask`."""
  side = size if isinstance(size, int) else max(size)
  record = {'image': np.zeros((side, side, 3), np.uint8), 'label': 0, 'boxes': np.zeros((0, 4), np.float32),
            'box_labels': np.zeros((0,), np.int64)}
  example = preprocess.eval_example(record, view=view, size=size, max_boxes=cfg.max_boxes)
  return {**example_structure(example), 'mask': ((), np.dtype(np.int32))}


def abstract_batch(structure: dict[str, tuple[tuple[int, ...], np.dtype]], global_batch: int,
                   mesh: Mesh) -> dict[str, jax.ShapeDtypeStruct]:
  """A global batch of `global_batch` examples, split over the mesh's 'data' axis (never allocated)."""
  mesh_lib.local_batch_size(global_batch, mesh)  # the run's own check: the batch must split over the devices
  sharding = mesh_lib.batch_sharding(mesh)
  return {k: jax.ShapeDtypeStruct((global_batch,) + shape, dtype, sharding=sharding)
          for k, (shape, dtype) in structure.items()}


def stage_task(config: ml_collections.ConfigDict, stage: str | None = None) -> tuple[Any, Any]:
  """(stage config, Task) as the loop builds them; `stage` defaults to the config's first stage.

  A later stage is built without the earlier stage's parameters: its frozen part is initialised instead,
  which has the same shapes, so the program is the one the run compiles.
  """
  stage = stage or config.stages[0]
  if stage not in loop.TASKS:
    raise InputError(f'unknown stage {stage!r}; available: {sorted(loop.TASKS)}.')
  cfg = loop.stage_config(config, stage)
  return cfg, loop.TASKS[stage](cfg, previous_params=None)


def abstract_state(cfg: ml_collections.ConfigDict, task: Any, mesh: Mesh,
                   num_train_records: int = ILSVRC2012_TRAIN_RECORDS) -> tuple[Any, Any, Callable]:
  """(abstract replicated TrainState, optax transformation, schedule), as `loop.run_stage` builds them."""
  steps_per_epoch, total = loop.steps_for(cfg, num_train_records)
  tx, schedule = loop.build_optimizer(cfg, task, steps_per_epoch, total)
  init_fn = lambda rng: state_lib.create(task.init_params(rng), tx, rng)
  shapes = jax.eval_shape(init_fn, jax.random.key(cfg.seed))
  return abstract_tree(shapes, mesh_lib.replicated(mesh)), tx, schedule


def train_program(cfg: ml_collections.ConfigDict, task: Any, mesh: Mesh, state: Any, tx: Any,
                  schedule: Callable) -> aot.Program:
  """The loop's jitted train step (`step.jit_train_step`), the state and a batch of the pipeline's layout."""
  jitted = step_lib.jit_train_step(mesh, loss_fn=task.loss_fn, tx=tx, schedule=schedule,
                                   skip_nonfinite=cfg.skip_nonfinite)
  structure = train_example_structure(cfg)
  return aot.Program('train', jitted, lambda batch: (state, abstract_batch(structure, batch, mesh)),
                     cfg.batch_size, frozenset({'all-reduce'}))


def eval_programs(cfg: ml_collections.ConfigDict, task: Any, mesh: Mesh, params: Any) -> list[aot.Program]:
  """Each evaluation's jitted step as `train.evaluate.Evaluator` compiles it (outputs gathered to every
  device, hence all-gather besides all-reduce), at the config's global eval batch."""
  programs = []
  for evaluation in task.evaluations:
    jitted = step_lib.jit_eval_step(mesh, evaluate.with_mask(evaluation.eval_step))
    structure = eval_example_structure(cfg, evaluation.view, evaluation.size)
    make_args = lambda batch, s=structure: (params, abstract_batch(s, batch, mesh))
    programs.append(aot.Program(f'eval/{evaluation.name}', jitted, make_args, cfg.eval.batch_size,
                                frozenset({'all-reduce', 'all-gather'})))
  return programs


def trainer_programs(config: ml_collections.ConfigDict, mesh: Mesh, *, stage: str | None = None,
                     include: Sequence[str] = ('train', 'eval'),
                     num_train_records: int = ILSVRC2012_TRAIN_RECORDS,
                     multislice: bool = False) -> list[aot.Program]:
  """The programs a run of `config` compiles on `mesh`: its train step and/or its evaluations.

  `multislice`: the mesh spans several slices, so the hierarchical all-reduce's collectives are expected too.
  """
  unknown = set(include) - {'train', 'eval'}
  if unknown:
    raise InputError(f'unknown program kind(s) {sorted(unknown)}; use train and/or eval.')
  cfg, task = stage_task(config, stage)
  state, tx, schedule = abstract_state(cfg, task, mesh, num_train_records)
  programs = [train_program(cfg, task, mesh, state, tx, schedule)] if 'train' in include else []
  if 'eval' in include:
    programs += eval_programs(cfg, task, mesh, state.params)
  if multislice:
    more = aot.MULTISLICE_COLLECTIVES
    programs = [dataclasses.replace(p, expected_collectives=p.expected_collectives | more) for p in programs]
  return programs


def run_preflight(config: Any, tpu_slice: topology.Slice, *, stage: str | None = None,
                  programs: tuple[str, ...] = ('train', 'eval'), max_compiles: int = 8) -> dict[str, Any]:
  """Compiles every requested program of `config` on the slice's training mesh; the result as plain data."""
  mesh = topology.training_mesh(tpu_slice)
  n = len(tpu_slice.devices)
  results = []
  for program in trainer_programs(config, mesh, stage=stage, include=programs,
                                  multislice=tpu_slice.num_slices > 1):
    report, search = aot.check_program(program, n, max_compiles)
    entry = dataclasses.asdict(report)
    if search is not None:
      entry['search'] = {
          'largest_fitting_per_device': search.largest_fitting,
          'largest_fitting_global': search.largest_fitting * n,
          'smallest_failing_per_device': search.smallest_failing, 'compiles': search.compiles,
          'exact': search.exact,
          'fitting_peak_bytes': search.fitting_report.memory.get('peak') if search.fitting_report else None}
    results.append(entry)
  return {'topology': tpu_slice.name, 'chip_config': tpu_slice.chip_config,
          'num_slices': tpu_slice.num_slices,
          'device_kind': tpu_slice.device_kind, 'num_devices': n, 'num_chips': tpu_slice.num_chips,
          'hbm_per_device_bytes': tpu_slice.hbm_per_device, 'stage': stage or config.stages[0],
          'fits': all(r['fits'] for r in results), 'programs': results, 'versions': versions()}
