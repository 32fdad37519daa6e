"""Faults of a 2-process x 2-device `jax.distributed` run (`launch.local`), with real processes and signals.

The whole job SIGKILLed at three moments (during an asynchronous save, between saves, near the end) and
restarted with the same command ends bit-identical to an uninterrupted 2-process run; SIGTERM to one process
makes both save the same step and exit 0, and the restart continues from it; SIGTERM before the loop ends the
process at once; a finished workdir resumes with more steps (the field case of issue 14); another model config
or another process count on a finished workdir stops with one line and touches no checkpoint.

The 2-process runs do not use the session's persistent compilation cache: jax writes it from process 0 only,
so with a warm cache process 0 starts training while process 1 still compiles, and the CPU backend's gloo
collectives give up after 30 s (`Gloo context initialization failed: DEADLINE_EXCEEDED`).
"""

import os
import re
import shutil
import signal
import time

import pytest

from tests.faults import harness

STEPS, EVERY = 8, 2  # the 2-process runs: a checkpoint every EVERY steps and at the end
PROCESSES, DEVICES = 2, 2
PRE_LOOP_BOUND_S = 10.0  # SIGTERM before the loop -> the process is gone
SIGTERM_BOUND_S = 90.0  # SIGTERM in the loop -> both processes saved and exited (loaded 2-core machine)


@pytest.fixture(scope='module')
def env2(env):
  """The fault suite's environment without the persistent compilation cache (see above)."""
  return {k: v for k, v in env.items() if not k.startswith(('JAX_COMPILATION_CACHE', 'JAX_PERSISTENT_CACHE'))}


def _flags(workdir, data_dir, *extra: str, steps: int = STEPS) -> list[str]:
  return harness.trainer_flags(workdir, data_dir, steps, EVERY, extra)


def _job(workdir, data_dir, env, log, *extra: str, steps: int = STEPS) -> harness.Trainer:
  """A `launch.local` run of PROCESSES x DEVICES; process 0's log lines are the ones with steps."""
  flags = harness.launched_flags(PROCESSES, DEVICES, _flags(workdir, data_dir, *extra, steps=steps))
  return harness.Trainer(flags, env, log, module='launch.local')


def _listing(directory) -> dict[str, tuple[int, int]]:
  """{relative path: (size, mtime_ns)} of every file below `directory`."""
  found = {}
  for root, _, files in os.walk(directory):
    for name in files:
      st = os.stat(os.path.join(root, name))
      found[os.path.relpath(os.path.join(root, name), directory)] = (st.st_size, st.st_mtime_ns)
  return found


@pytest.fixture(scope='module')
def reference2(tmp_path_factory, data_dir, env2):
  """(workdir, final params) of an uninterrupted 2-process x 2-device run."""
  tmp = tmp_path_factory.mktemp('reference2')
  run = _job(tmp / 'w', data_dir, env2, tmp / 'log.txt')
  assert run.wait() == 0, run.tail()
  step, params = harness.final_params(tmp / 'w')
  assert step == STEPS
  return tmp / 'w', params


def _restart(index, tmp_path, data_dir, env, expect_from: int) -> harness.Trainer:
  run = _job(tmp_path / 'w', data_dir, env, tmp_path / f'log{index}.txt')
  run.wait_for('the first step after the restart', lambda: run.last_step() > 0, timeout=600)
  resumed = harness.resumed_from(run.text()) or 0
  assert resumed == expect_from, f'resumed from {resumed}, newest complete checkpoint was {expect_from}'
  return run


def _finishes_like(run: harness.Trainer, workdir, reference) -> None:
  """The run exits 0 with the uninterrupted run's final step and bit-identical parameters."""
  assert run.wait() == 0, run.tail()
  step, params = harness.final_params(workdir)
  assert step == STEPS
  harness.assert_same_params(params, reference[1])


def _kill(run: harness.Trainer, workdir) -> int:
  """SIGKILLs the whole job; returns the newest complete checkpoint it left (0: none)."""
  harness.kill_job(run)
  done = harness.complete_steps(workdir)
  return done[-1] if done else 0


@pytest.mark.slow
@pytest.mark.multiprocess
def test_whole_job_sigkilled_three_times_ends_bit_identical(tmp_path, data_dir, env2, reference2):
  workdir = tmp_path / 'w'
  run = _job(workdir, data_dir, env2, tmp_path / 'log0.txt')

  # 1. During an asynchronous save: orbax's tmp directory exists (both processes are writing into it).
  run.wait_for('a checkpoint write in flight', lambda: harness.tmp_checkpoints(workdir), timeout=600)
  newest = _kill(run, workdir)
  in_flight = harness.tmp_checkpoints(workdir)
  assert in_flight, 'the save finished before the kill landed: the moment was missed'
  assert newest < int(in_flight[0].split('.')[0])
  run = _restart(1, tmp_path, data_dir, env2, expect_from=newest)

  # 2. Between two saves: one step after a complete checkpoint.
  after = newest
  run.wait_for('a step after a new complete checkpoint',
               lambda: (harness.complete_steps(workdir) or [0])[-1] > after
               and run.last_step() > harness.complete_steps(workdir)[-1])
  newest = _kill(run, workdir)
  assert newest > after
  run = _restart(2, tmp_path, data_dir, env2, expect_from=newest)

  # 3. Near the end: the last step but one.
  run.wait_for(f'step {STEPS - 1}', lambda: run.last_step() >= STEPS - 1)
  newest = _kill(run, workdir)
  run = _restart(3, tmp_path, data_dir, env2, expect_from=newest)
  _finishes_like(run, workdir, reference2)


@pytest.mark.slow
@pytest.mark.multiprocess
def test_sigterm_to_one_process_both_save_the_same_step_and_resume(tmp_path, data_dir, env2, reference2):
  workdir = tmp_path / 'w'
  run = _job(workdir, data_dir, env2, tmp_path / 'log0.txt')
  run.wait_for('step 3', lambda: run.last_step() >= 3, timeout=600)
  victim = harness.worker(run, 1)
  os.kill(victim, signal.SIGTERM)  # process 1 only: process 0 learns of it through the per-step agreement
  t0, at_signal = time.monotonic(), run.last_step()
  rc = run.wait(SIGTERM_BOUND_S)
  elapsed = time.monotonic() - t0
  assert rc == 0, run.tail()
  saved = [int(s) for s in re.findall(r'SIGTERM: saved step (\d+)', run.text())]  # logged by process 0
  assert len(saved) == 1, run.tail()
  assert at_signal <= saved[0] <= at_signal + 3, (at_signal, saved)  # two steps, plus one of log skew
  assert saved[0] in harness.complete_steps(workdir)
  data = harness.checkpoint_dir(workdir) / str(saved[0]) / 'data'
  assert {'process_0-of-2.json', 'process_1-of-2.json'} <= set(os.listdir(data))  # both saved this step
  print(f'SIGTERM to process 1 at step {at_signal} -> both saved step {saved[0]}, launcher exit 0 in '
        f'{elapsed:.2f} s')

  _finishes_like(_restart(1, tmp_path, data_dir, env2, expect_from=saved[0]), workdir, reference2)


@pytest.mark.slow
@pytest.mark.multiprocess
def test_sigterm_before_the_loop_ends_the_process_at_once(tmp_path, data_dir, env2):
  workdir = tmp_path / 'w'
  run = _job(workdir, data_dir, env2, tmp_path / 'log.txt')
  run.wait_for('jax.distributed on process 1', lambda: 'jax.distributed ready: process 1' in run.text(),
               timeout=300)
  victim = harness.worker(run, 1)
  os.kill(victim, signal.SIGTERM)
  t0 = time.monotonic()
  while os.path.exists(f'/proc/{victim}') and 'Z' not in open(f'/proc/{victim}/stat').read().split()[2]:
    assert time.monotonic() - t0 < PRE_LOOP_BOUND_S, 'process 1 still running after SIGTERM:\n' + run.tail()
    time.sleep(0.01)
  elapsed = time.monotonic() - t0
  assert run.wait(60) == 3, run.tail()
  assert 'process 1 exited with code -15 (SIGTERM)' in run.text(), run.tail()
  assert run.last_step() == 0 and not harness.complete_steps(workdir)  # as after a kill: nothing trained
  print(f'SIGTERM before the loop: process 1 gone in {elapsed:.2f} s')


@pytest.mark.slow
@pytest.mark.multiprocess
def test_finished_workdir_resumes_with_more_steps(tmp_path, data_dir, env2, reference2):
  """Issue 14's field case: the same 2-process command with more steps resumes instead of failing."""
  shutil.copytree(reference2[0], tmp_path / 'w')
  run = _job(tmp_path / 'w', data_dir, env2, tmp_path / 'log.txt', steps=STEPS + 2)
  assert run.wait() == 0, run.tail()
  assert harness.resumed_from(run.text()) == STEPS
  assert harness.final_params(tmp_path / 'w')[0] == STEPS + 2


@pytest.mark.slow
@pytest.mark.multiprocess
@pytest.mark.parametrize('extra, expected', [
    (['--config.model.width_divisor=16'], r'does not match this run: params/\S+ has shape \(.*\) there and '
                                          r'\(.*\) here'),
    ([], 'was saved by 2 processes, this run has 1'),
], ids=['model_config', 'process_count'])
def test_mismatch_stops_with_one_line_and_touches_no_checkpoint(tmp_path, data_dir, env, reference2, extra,
                                                                 expected):
  shutil.copytree(reference2[0], tmp_path / 'w')
  before = _listing(harness.checkpoint_dir(tmp_path / 'w'))
  config = (tmp_path / 'w' / 'config.json').read_bytes()
  run = harness.Trainer(_flags(tmp_path / 'w', data_dir, *extra), env, tmp_path / 'log.txt')  # one process
  assert run.wait() == 2, run.tail()
  last = run.text().strip().splitlines()[-1]
  assert re.search(expected, last) and 'Traceback' not in run.text(), run.tail()
  assert _listing(harness.checkpoint_dir(tmp_path / 'w')) == before  # nothing renamed, rewritten or added
  assert (tmp_path / 'w' / 'config.json').read_bytes() == config  # still the config the checkpoints match
