"""SIGKILL at five different moments of one training run, each followed by a restart of the same command.

The run is killed early (before any checkpoint), during an asynchronous checkpoint write (orbax's tmp directory
exists), right after a save completed, between two saves, and near the end; the sixth process finishes. Each
restart must resume from the newest *complete* checkpoint on disk (so at most the steps since it are lost, and
a half-written one is never used), and the final parameters must be bit-identical to the uninterrupted run's.
"""

import signal

import pytest

from tests.faults import harness
from tests.faults.conftest import EVERY, STEPS


def _kill_and_check(run: harness.Trainer, workdir) -> tuple[int, int]:
  """SIGKILLs `run`; returns (last step it logged, newest complete checkpoint left on disk)."""
  run.kill()
  assert run.proc.returncode == -signal.SIGKILL
  done = harness.complete_steps(workdir)
  return run.last_step(), (done[-1] if done else 0)


def _restart(index: int, tmp_path, data_dir, env, expect_from: int) -> harness.Trainer:
  """Restarts the identical command; checks it resumed from `expect_from` (0: from scratch)."""
  run = harness.Trainer(harness.trainer_flags(tmp_path / 'w', data_dir, STEPS, EVERY), env,
                        tmp_path / f'log{index}.txt')
  run.wait_for('the first step after the restart', lambda: run.last_step() > 0)
  resumed = harness.resumed_from(run.text()) or 0
  assert resumed == expect_from, f'resumed from {resumed}, newest complete checkpoint was {expect_from}'
  return run


@pytest.mark.slow
@pytest.mark.multiprocess
def test_sigkill_at_five_moments_resumes_exactly(tmp_path, data_dir, env, reference):
  workdir = tmp_path / 'w'
  lost = []
  run = harness.Trainer(harness.trainer_flags(workdir, data_dir, STEPS, EVERY), env, tmp_path / 'log0.txt')

  # 1. Early: a couple of steps done, no checkpoint yet.
  run.wait_for('step 2', lambda: run.last_step() >= 2 and not harness.complete_steps(workdir))
  logged, newest = _kill_and_check(run, workdir)
  assert newest == 0
  lost.append(logged - newest)
  run = _restart(1, tmp_path, data_dir, env, expect_from=0)

  # 2. During an asynchronous checkpoint write: orbax's tmp directory exists.
  run.wait_for('a checkpoint write in flight', lambda: harness.tmp_checkpoints(workdir))
  logged, newest = _kill_and_check(run, workdir)
  in_flight = harness.tmp_checkpoints(workdir)
  assert in_flight, 'the save finished before the kill landed: the moment was missed'
  in_flight_step = int(in_flight[0].split('.')[0])
  assert newest < in_flight_step  # the half-written step is not listed as a checkpoint
  lost.append(logged - newest)
  run = _restart(2, tmp_path, data_dir, env, expect_from=newest)

  # 3. Right after a save completed.
  after = newest
  run.wait_for('a new complete checkpoint', lambda: (harness.complete_steps(workdir) or [0])[-1] > after)
  logged, newest = _kill_and_check(run, workdir)
  assert newest > after
  lost.append(logged - newest)
  run = _restart(3, tmp_path, data_dir, env, expect_from=newest)

  # 4. Mid-interval: two steps after the last checkpoint.
  target = newest + EVERY // 2
  run.wait_for(f'step {target}', lambda: run.last_step() >= target)
  logged, newest = _kill_and_check(run, workdir)
  lost.append(logged - newest)
  run = _restart(4, tmp_path, data_dir, env, expect_from=newest)

  # 5. Near the end: the last step but one.
  run.wait_for(f'step {STEPS - 1}', lambda: run.last_step() >= STEPS - 1)
  logged, newest = _kill_and_check(run, workdir)
  lost.append(logged - newest)
  run = _restart(5, tmp_path, data_dir, env, expect_from=newest)

  assert run.wait() == 0, run.tail()
  assert not harness.tmp_checkpoints(workdir), 'the restart left the killed write\'s tmp directory behind'
  step, params = harness.final_params(workdir)
  _, ref_step, ref_params = reference
  assert step == ref_step
  harness.assert_same_params(params, ref_params)
  # Each restart lost exactly the steps since the newest complete checkpoint (an async save still in flight
  # at the kill does not count), never a negative number (a checkpoint from the future).
  assert all(n >= 0 for n in lost), lost
  print('steps lost per kill:', lost)
