"""SIGTERM across two real `jax.distributed` processes (`train.loop.Preemption`): a signal to one process stops
both at the same step, at most two steps later; before the loop it ends the process at once."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from launch import common
from tests import xla_flags
from tests.train import preemption_worker

REPO = Path(__file__).resolve().parents[2]


def _run_pair(mode: str) -> list[subprocess.CompletedProcess]:
  port = common.free_port()
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'XLA_FLAGS': xla_flags.FAST_COMPILE, 'PYTHONUNBUFFERED': '1'}
  procs = [subprocess.Popen([sys.executable, '-m', 'tests.train.preemption_worker', str(i), str(port), mode],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  results = []
  for p in procs:
    try:
      out, _ = p.communicate(timeout=180)
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      raise
    results.append(subprocess.CompletedProcess(p.args, p.returncode, out))
  return results


def _stop_step(output: str) -> int:
  stops = [line for line in output.splitlines() if line.startswith('stop ')]
  assert len(stops) == 1, output[-2000:]
  return int(stops[0].split()[1])


@pytest.mark.slow
@pytest.mark.multiprocess
def test_sigterm_to_one_process_stops_both_at_the_same_step_within_two():
  first, second = _run_pair('loop')
  assert first.returncode == 0 and second.returncode == 0, first.stdout[-2000:] + second.stdout[-2000:]
  stop0, stop1 = _stop_step(first.stdout), _stop_step(second.stdout)
  assert stop0 == stop1  # process 0 never got the signal
  assert preemption_worker.SIGNAL_AT < stop0 <= preemption_worker.SIGNAL_AT + 2


@pytest.mark.slow
@pytest.mark.multiprocess
def test_sigterm_before_the_loop_ends_the_process_with_the_signal():
  _, signalled = _run_pair('before')
  assert signalled.returncode == -signal.SIGTERM, signalled.stdout[-2000:]
  assert 'survived' not in signalled.stdout
