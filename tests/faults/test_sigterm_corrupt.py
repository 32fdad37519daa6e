"""SIGTERM (preemption notice) saves and exits cleanly; a damaged newest checkpoint is skipped with a warning.

Both restarts must finish with parameters bit-identical to the uninterrupted reference run.
"""

import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.faults import harness
from tests.faults.conftest import EVERY, STEPS

SIGTERM_BOUND_S = 60.0  # from the signal to the process's exit, on a loaded 2-core machine


@pytest.mark.slow
@pytest.mark.multiprocess
def test_sigterm_saves_exits_zero_and_resumes(tmp_path, data_dir, env, reference):
  workdir = tmp_path / 'w'
  flags = harness.trainer_flags(workdir, data_dir, STEPS, EVERY)
  run = harness.Trainer(flags, env, tmp_path / 'log0.txt')
  run.wait_for('step 6', lambda: run.last_step() >= 6)
  t0 = time.monotonic()
  run.signal(signal.SIGTERM)
  rc = run.wait(SIGTERM_BOUND_S)
  elapsed = time.monotonic() - t0
  assert rc == 0, run.tail()
  saved = [int(s) for s in harness.re.findall(r'SIGTERM: saved step (\d+)', run.text())]
  assert len(saved) == 1 and saved[0] >= 6, run.tail()
  assert saved[0] in harness.complete_steps(workdir)  # the save finished before the process exited
  print(f'SIGTERM -> exit 0 in {elapsed:.2f} s, saved step {saved[0]}')

  again = harness.Trainer(flags, env, tmp_path / 'log1.txt')
  assert again.wait() == 0, again.tail()
  assert harness.resumed_from(again.text()) == saved[0]
  step, params = harness.final_params(workdir)
  assert step == reference[1]
  harness.assert_same_params(params, reference[2])


def _damage(step_dir: Path, how: str) -> Path:
  """Truncates to half, or deletes, the largest file of the checkpoint's state; returns its path."""
  victim = max((p for p in (step_dir / 'state').rglob('*') if p.is_file()), key=lambda p: p.stat().st_size)
  if how == 'truncate':
    with open(victim, 'r+b') as f:
      f.truncate(victim.stat().st_size // 2)
  else:
    victim.unlink()
  return victim


@pytest.mark.slow
@pytest.mark.multiprocess
@pytest.mark.parametrize('how', ['truncate', 'delete'])
def test_damaged_latest_checkpoint_falls_back_and_finishes(tmp_path, data_dir, env, reference, how):
  ref_dir, ref_step, ref_params = reference
  workdir = tmp_path / 'w'
  shutil.copytree(ref_dir, workdir)
  steps = harness.complete_steps(workdir)
  assert steps[-1] == STEPS and len(steps) >= 2
  _damage(harness.checkpoint_dir(workdir) / str(STEPS), how)

  run = harness.Trainer(harness.trainer_flags(workdir, data_dir, STEPS, EVERY), env, tmp_path / 'log.txt')
  assert run.wait() == 0, run.tail()
  log = run.text()
  damaged = str(harness.checkpoint_dir(workdir) / str(STEPS))
  warnings = [line for line in log.splitlines() if damaged in line and 'corrupt' in line]
  assert warnings, f'no warning naming {damaged}:\n{run.tail()}'
  assert harness.resumed_from(log) == steps[-2]
  step, params = harness.final_params(workdir)
  assert step == ref_step
  harness.assert_same_params(params, ref_params)
