"""Runs a task's `Evaluation` over an eval iterator: jitted per-example outputs, padding dropped, metrics.

The eval step's outputs are replicated (out_shardings), so every process holds the whole global batch's
outputs and the same metrics; only process 0 logs them.
"""

from typing import Any, Callable, Iterable

import jax
import numpy as np
from jax.sharding import Mesh

from overfeat_jax.parallel import mesh as mesh_lib
from overfeat_jax.train import step as step_lib
from overfeat_jax.train.logging import Progress, Writer
from overfeat_jax.tasks.task import Evaluation


def with_mask(eval_step: Callable) -> Callable:
  """The task's eval step, also returning the batch's `mask` so padding can be dropped after the gather."""
  return lambda params, batch: {**eval_step(params, batch), 'mask': batch['mask']}


class Evaluator:
  """One `Evaluation` compiled once for a mesh; `run(params, batches, num_batches)` -> metrics."""

  def __init__(self, evaluation: Evaluation, mesh: Mesh, writer: Writer | None = None,
               log_every: int = 0, step: Callable | None = None):
    """`step`: the jitted eval step already built for `mesh` (`train.programs`); None: jitted here."""
    self.evaluation = evaluation
    self._fn = step_lib.jit_eval_step(mesh, with_mask(evaluation.eval_step)) if step is None else step
    self._sharding = mesh_lib.batch_sharding(mesh)
    self._writer, self._log_every = writer, log_every

  def outputs(self, params: Any, batches: Iterable[dict], num_batches: int, batch_size: int) -> dict:
    """Every real example's outputs, concatenated in order (numpy)."""
    parts: dict[str, list] = {}
    progress = Progress(num_batches, batch_size, 0)
    for i, batch in enumerate(batches):
      out = jax.device_get(self._fn(params, mesh_lib.to_global(batch, self._sharding)))
      keep = np.asarray(out.pop('mask'), bool)
      for k, v in out.items():
        parts.setdefault(k, []).append(np.asarray(v)[keep])
      if self._writer and self._log_every and ((i + 1) % self._log_every == 0 or i + 1 == num_batches):
        self._writer.info('%s', progress.line(i + 1, f'eval/{self.evaluation.name}')[0])
    return {k: np.concatenate(v) for k, v in parts.items()}

  def run(self, params: Any, batches: Iterable[dict], num_batches: int, batch_size: int) -> dict[str, float]:
    """Metrics named '<evaluation>/<metric>'."""
    metrics = self.evaluation.summarize(self.outputs(params, batches, num_batches, batch_size))
    return {f'{self.evaluation.name}/{k}': float(v) for k, v in metrics.items()}
