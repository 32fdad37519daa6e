"""Console progress (absl: step/total, img/s, loss, lr, ETA) and TensorBoard events (tensorboardX, no TF), local
or in a remote workdir (`storage.Mirror`). Only process 0 writes anything; JSON files go through
`overfeat_jax.storage.write_json_atomic`.
"""

import math
import time
from typing import Any, Mapping

import jax
from absl import logging

from overfeat_jax import storage
from overfeat_jax.progress import format_duration, progress_bar


class Progress:
  """Throughput and ETA over the steps of this run, not counting the first step's compile (`start_clock`)."""

  def __init__(self, total_steps: int, batch_size: int, first_step: int):
    self.total, self.batch = total_steps, batch_size
    self.start_clock(first_step)

  def start_clock(self, step: int) -> None:
    """Times from now, `step` done: called once the first step of a run (or a resumed run) has compiled, so a
    compile of minutes does not inflate the ETA of the first lines."""
    self.t0, self.s0 = time.perf_counter(), step
    self.last_t, self.last_s = self.t0, step

  def line(self, step: int, what: str = 'train') -> tuple[str, float]:
    """The log line for `step`, and the images/s since the previous line."""
    now = time.perf_counter()
    rate = (step - self.last_s) * self.batch / max(now - self.last_t, 1e-9)
    per_step = (now - self.t0) / max(step - self.s0, 1)
    eta = per_step * (self.total - step)
    self.last_t, self.last_s = now, step
    return (f'{what} {progress_bar(step, self.total)} {step}/{self.total} | {rate:7.1f} img/s | '
            f'ETA {format_duration(eta)}'), rate


class Writer:
  """TensorBoard scalars + absl lines; a no-op on every process but 0. `logdir` may be remote (gs://): the
  events file is written locally and uploaded whole at every flush."""

  def __init__(self, logdir: str):
    self.active = jax.process_index() == 0
    self._tb = self._mirror = None
    if self.active:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._mirror = storage.Mirror(logdir)
      self._tb = SummaryWriter(self._mirror.local)

  def scalars(self, step: int, values: Mapping[str, float], prefix: str = '') -> None:
    """Writes `values` as TensorBoard scalars at `step`, named `prefix + name`. A value that is not a finite
    number (e.g. the mAP of an evaluation split without ground-truth boxes, `tasks.detection`) is not written:
    one warning line names it instead (TensorBoard would warn and plot nothing useful)."""
    if not self.active:
      return
    skipped = []
    for name, value in values.items():
      if math.isfinite(float(value)):
        self._tb.add_scalar(f'{prefix}{name}', float(value), step)
      else:
        skipped.append(f'{prefix}{name}')
    if skipped:
      logging.warning('not written to TensorBoard at step %d (not a finite number): %s', step, ', '.join(skipped))
    self._tb.flush()
    self._mirror.sync()

  def info(self, msg: str, *args) -> None:
    if self.active:
      logging.info(msg, *args)

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
      self._mirror.close()
