"""The trainer's programs for ahead-of-time compilation: the library half of `python -m overfeat_jax.preflight`.

The programs are the very ones `loop.run_stage` runs: both get them from `loop.stage_programs` (config ->
`train.programs.build`: the abstract state, the jitted train step with its shardings and donation, the jitted
evaluation steps), and the abstract batches have the input pipeline's layout (`train.programs.train_structure`
and `eval_structure`: the preprocessing functions on a blank record). tests/train/test_programs.py checks that
the lowered programs of a real run and of the pre-flight are the same text. `parallel.aot` compiles and reads
them, `parallel.preflight_report` prints the result.
"""

import dataclasses
from typing import Any, Sequence

from jax.sharding import Mesh

from overfeat_jax import config_files
from overfeat_jax.errors import InputError
from overfeat_jax.parallel import aot
from overfeat_jax.parallel import topology
from overfeat_jax.parallel.preflight_report import versions
from overfeat_jax.settings import InputSettings
from overfeat_jax.train import loop
from overfeat_jax.train import programs as programs_lib

ILSVRC2012_TRAIN_RECORDS = 1_281_167  # only sets the schedule's boundaries, which do not change the program


def stage_task(config: Any, stage: str | None = None) -> tuple[Any, Any]:
  """(stage config, Task) as the loop builds them; `stage` defaults to the config's first stage.

  A later stage is built without the earlier stage's parameters: those are copied in by the task's
  `warm_start` outside the compiled programs, so the programs are the ones the run compiles.
  """
  return loop.stage_task(config, stage or config.stages[0], previous_params=None)


def program_list(data: InputSettings, task: Any, built: programs_lib.Programs,
                 include: Sequence[str] = ('train', 'eval')) -> list[aot.Program]:
  """`built`'s train step and/or evaluation steps as `aot.Program`s with abstract batches of the pipeline's
  layout (`data`: the crop, the training resize, the boxes) at the global batch sizes of `data`. Evaluations
  gather their outputs to every device (all-gather)."""
  programs = []
  if 'train' in include:
    train = programs_lib.train_structure(crop_size=data.crop_size, resize_smaller=data.train_resize,
                                         max_boxes=data.max_boxes)
    programs.append(aot.Program('train', built.train_step, lambda batch: built.train_args(train, batch),
                                data.batch_size, frozenset({'all-reduce'})))
  if 'eval' in include:
    for evaluation in task.evaluations:
      structure = programs_lib.eval_structure(view=evaluation.view, size=evaluation.size, max_boxes=data.max_boxes)
      programs.append(aot.Program(f'eval/{evaluation.name}', built.eval_steps[evaluation.name],
                                  lambda batch, s=structure: built.eval_args(s, batch), data.eval_batch_size,
                                  frozenset({'all-reduce', 'all-gather'})))
  return programs


def trainer_programs(config: Any, mesh: Mesh, *, stage: str | None = None,
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
  built, _ = loop.stage_programs(cfg, task, mesh, num_train_records)
  programs = program_list(config_files.input_settings(cfg, task.name), task, built, include)
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
