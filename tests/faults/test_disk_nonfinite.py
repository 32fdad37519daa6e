"""A disk that fills up during a save, and a loss that becomes non-finite.

Full disk: the workdir is a size-limited tmpfs mount (we run as root in CI; the test skips, saying why, where
`mount` is not permitted). Once the first checkpoint is complete the test fills the mount, so the next save
hits ENOSPC. The trainer must end with one line on stderr (no traceback) and a non-zero status, and the
complete checkpoint must still restore: training then finishes from it, matching the reference run.

Non-finite loss: a learning rate of 1e30 (a real config value, no test hook) makes the loss overflow after the
warm-up's first non-zero step. Without `skip_nonfinite` the run stops with exit 2 and one line naming the step,
and no checkpoint past the last finite step exists; with it, the run finishes and reports how many steps it
skipped.
"""

import json
import subprocess
import uuid

import numpy as np
import pytest

from tests.faults import harness
from tests.faults.conftest import EVERY, STEPS


def _final_lines(log: str) -> list[str]:
  """What the process printed after its last absl log record (`I1125 13:45:08.84 ...`): its own last words.

  Libraries may log an exception with its traceback as a log record (orbax does, for a failed background
  write); that is a log, not the program's error output, and it comes before the last record.
  """
  lines = log.splitlines()
  last = max((i for i, line in enumerate(lines) if harness.re.match(r'^[IWEF]\d{4} ', line)), default=-1)
  return [line for line in lines[last + 1:] if line.strip()]


@pytest.fixture
def small_disk(tmp_path):
  mount_point = tmp_path / 'disk'
  mount_point.mkdir()
  done = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=4m', f'tmpfs_{uuid.uuid4().hex[:8]}',
                         str(mount_point)], capture_output=True, text=True, check=False)
  if done.returncode != 0:
    pytest.skip(f'cannot mount a size-limited tmpfs here: {done.stderr.strip() or done.returncode}')
  yield mount_point
  subprocess.run(['umount', '-l', str(mount_point)], check=False)


def _fill(directory) -> int:
  """Writes a file until the filesystem is full; returns how many bytes it took."""
  written, chunk = 0, b'\0' * 4096
  with open(directory / 'filler', 'wb', buffering=0) as f:
    try:
      while True:
        written += f.write(chunk)
    except OSError:
      pass
  return written


@pytest.mark.slow
@pytest.mark.multiprocess
def test_full_disk_one_line_error_and_previous_checkpoint_restores(small_disk, tmp_path, data_dir, env,
                                                                 reference):
  workdir = small_disk / 'w'
  flags = harness.trainer_flags(workdir, data_dir, STEPS, EVERY)
  run = harness.Trainer(flags, env, tmp_path / 'log0.txt')
  run.wait_for('the first complete checkpoint', lambda: harness.complete_steps(workdir))
  _fill(small_disk)
  rc = run.wait(180)
  errors = _final_lines(run.text())
  assert rc == 2, run.tail()
  # The first write to fail may be the checkpoint's (CheckpointWriteError naming its directory) or TensorBoard's.
  # The program's last word is its one-line error; orbax/tensorstore background threads hit by the full disk may
  # print their own tracebacks before it (docs/guarantees.md, known limits).
  assert errors and 'No space left on device' in errors[-1], run.tail()
  assert errors[-1].startswith('main.py: ') and 'Traceback' not in errors[-1], run.tail()
  kept = harness.complete_steps(workdir)
  assert kept, 'no complete checkpoint survived'

  (small_disk / 'filler').unlink()
  again = harness.Trainer(flags, env, tmp_path / 'log1.txt')
  assert again.wait() == 0, again.tail()
  assert harness.resumed_from(again.text()) == kept[-1]
  step, params = harness.final_params(workdir)
  assert step == reference[1]
  harness.assert_same_params(params, reference[2])


NONFINITE = ['--config.schedule.base_lr=1e30', '--config.checkpoint_every_steps=1']


@pytest.mark.slow
@pytest.mark.multiprocess
def test_nonfinite_loss_stops_naming_the_step_last_checkpoint_intact(tmp_path, data_dir, env):
  workdir = tmp_path / 'w'
  run = harness.Trainer(harness.trainer_flags(workdir, data_dir, 8, 1, NONFINITE), env, tmp_path / 'log.txt')
  assert run.wait() == 2, run.tail()
  errors = _final_lines(run.text())
  assert 'Traceback' not in run.text() and len(errors) == 1, errors
  found = harness.re.search(r'non-finite at step (\d+)', errors[0])
  assert found, errors
  bad = int(found.group(1))
  kept = harness.complete_steps(workdir)
  assert kept and max(kept) <= bad, (kept, bad)  # nothing saved from after the bad update
  _, params = harness.final_params(workdir)
  assert all(np.isfinite(v).all() for v in params.values())


def _latest_state(workdir) -> tuple[int, dict]:
  """(step, full train state as numpy) of the newest checkpoint, read with plain orbax."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  directory = harness.checkpoint_dir(workdir)
  step = harness.complete_steps(workdir)[-1]
  with ocp.CheckpointManager(directory) as manager:
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(),
                                                             meta=ocp.args.JsonRestore()))
  return step, restored.state


@pytest.mark.slow
@pytest.mark.multiprocess
def test_skip_nonfinite_trains_to_the_end_and_counts(tmp_path, data_dir, env):
  """With skip_nonfinite every step runs and the bad ones are counted in the state (and saved with it). This
  learning rate wrecks the weights before the first bad step (a finite update of ~1e30), so the final
  evaluation then refuses the NaN scores: exit 2, one line, the checkpoints of every step intact."""
  workdir = tmp_path / 'w'
  flags = harness.trainer_flags(workdir, data_dir, 8, 1, [*NONFINITE, '--config.skip_nonfinite=True'])
  run = harness.Trainer(flags, env, tmp_path / 'log.txt')
  rc = run.wait()
  assert run.last_step() == 8, run.tail()  # did not stop at the first non-finite step
  assert rc in (0, 2) and len(_final_lines(run.text())) <= 1 + (rc == 0), run.tail()
  step, state = _latest_state(workdir)
  assert step >= 7
  count, first = int(state['nonfinite_count']), int(state['first_nonfinite'])
  assert 0 <= first < step and count == step - first, (count, first, step)  # every step from there on
  assert all(np.isfinite(v).all() for v in harness.jax_leaves(state['params']))
