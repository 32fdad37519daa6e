"""Two-process `jax.distributed` training where one process is SIGKILLed mid-run.

Under `launch.local` the launcher notices, stops the survivor and exits 3 naming the dead process. Without a
supervisor (two raw processes), the survivor must not hang forever: it ends with an error on its own within
jax's heartbeat timeout.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.faults import harness

DEATH_BOUND_S = 60.0  # launcher: grace (5 s) plus slack for a loaded machine


@pytest.mark.slow
@pytest.mark.multiprocess
def test_launcher_stops_the_survivor_and_reports_the_dead_process(tmp_path, data_dir, env):
  flags = ['--num_processes=2', '--devices_per_process=1', '--grace_s=5', '--timeout_s=400', '--',
           *harness.trainer_flags(tmp_path / 'w', data_dir, 400, 50)]
  run = harness.Trainer(flags, env, tmp_path / 'log.txt', module='launch.local')
  run.wait_for('step 2 of the 2-process run', lambda: run.last_step() >= 2, timeout=300)
  workers = harness.children(run.proc.pid)
  victim = [pid for pid, cmd in workers.items() if '--process_id=1' in cmd]
  assert len(workers) == 2 and len(victim) == 1, workers
  t0 = time.monotonic()
  os.kill(victim[0], signal.SIGKILL)
  rc = run.wait(DEATH_BOUND_S)
  elapsed = time.monotonic() - t0
  assert rc == 3, run.tail()
  last = run.text().strip().splitlines()[-1]
  assert 'process 1' in last and 'SIGKILL' in last, last
  assert not any(Path(f'/proc/{pid}').exists() and 'Z' not in Path(f'/proc/{pid}/stat').read_text().split()[2]
                 for pid in workers), 'a worker outlived the launcher'
  print(f'launcher exited 3 in {elapsed:.1f} s after the SIGKILL: {last}')


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.multiprocess
def test_raw_survivor_exits_with_an_error_instead_of_hanging(tmp_path, data_dir, env):
  port = _free_port()
  workers = []
  for pid in range(2):
    flags = [*harness.trainer_flags(tmp_path / 'w', data_dir, 400, 50), f'--coordinator_address=127.0.0.1:{port}',
             '--num_processes=2', f'--process_id={pid}']
    workers.append(harness.Trainer(flags, env, tmp_path / f'log{pid}.txt'))
  survivor, victim = workers
  survivor.wait_for('step 2 of the 2-process run', lambda: survivor.last_step() >= 2, timeout=300)
  t0 = time.monotonic()
  victim.kill()
  rc = survivor.wait(150)  # jax's heartbeat timeout is 100 s by default; a broken collective fails sooner
  elapsed = time.monotonic() - t0
  assert rc != 0, survivor.tail()
  print(f'survivor exited {rc} {elapsed:.1f} s after its peer died: {survivor.tail(3)}')
