"""A small real jax.distributed program for the launcher tests: a global array from per-process data, summed.

Takes the trainer's flags (`--coordinator_address --num_processes --process_id`), starts jax.distributed with
`overfeat_jax.parallel.distributed.initialize`, and checks that a jitted global sum sees every process's rows.
`--pid_dir` writes `p{index}.pid` once initialised (so a test can kill one); `--sleep_s` then waits.
"""

import os
import pathlib
import time

from absl import app
from absl import flags
import numpy as np

from overfeat_jax.parallel import distributed

_COORDINATOR = flags.DEFINE_string('coordinator_address', None, 'HOST:PORT of process 0.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Number of processes.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'Index of this process.')
_PID_DIR = flags.DEFINE_string('pid_dir', None, 'Write p{process_id}.pid here after initialisation.')
_SLEEP_S = flags.DEFINE_float('sleep_s', 0.0, 'Sleep this long after the check (to be killed in tests).')
# Accepted (and ignored) so that launchers can hand this program the trainer's command line.
_CONFIG = flags.DEFINE_string('config', None, 'Ignored: the trainer flag.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Ignored: the trainer flag.')
_ROWS_PER_DEVICE = 2


def main(argv):
  del argv
  distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                         initialization_timeout=60)
  import jax  # after initialize, as the trainer does
  from jax.experimental import multihost_utils
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
  if _PID_DIR.value:
    pathlib.Path(_PID_DIR.value, f'p{jax.process_index()}.pid').write_text(str(os.getpid()))
  mesh = Mesh(np.array(jax.devices()), ('data',))
  sharding = NamedSharding(mesh, P('data'))
  local = np.full((jax.local_device_count() * _ROWS_PER_DEVICE, 3), jax.process_index() + 1, np.float32)
  global_array = jax.make_array_from_process_local_data(sharding, local)  # [P * L * 2, 3]
  total = float(jax.jit(lambda a: a.sum(), out_shardings=NamedSharding(mesh, P()))(global_array))
  rows = jax.local_device_count() * _ROWS_PER_DEVICE * 3
  expected = float(sum((p + 1) * rows for p in range(jax.process_count())))
  assert global_array.shape == (jax.device_count() * _ROWS_PER_DEVICE, 3), global_array.shape
  assert total == expected, (total, expected)
  print(f'allreduce ok: process {jax.process_index()} of {jax.process_count()}, '
        f'{jax.device_count()} devices, sum {total:g} == {expected:g}', flush=True)
  time.sleep(_SLEEP_S.value)
  multihost_utils.sync_global_devices('done')


if __name__ == '__main__':
  app.run(main)
