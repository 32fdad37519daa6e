"""`python -m overfeat_jax.main`: overrides, bad fields and values, bad workdir -> one line, exit status 2."""

import subprocess
import sys

import pytest

from tests.train.helpers import REPO

SMOKE = 'experiments/configs/embedded.py:smoke'


def _main(*args, timeout=120):
  env = {'JAX_PLATFORMS': 'cpu', 'PATH': '/usr/bin:/bin'}
  return subprocess.run([sys.executable, '-m', 'overfeat_jax.main', *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize('flag, words', [
    ('--config.no_such_field=1', 'no_such_field'),
    ('--config.batch_size=many', 'batch_size'),
    ('--config.model.width_divisor=2.5', 'width_divisor'),
])
def test_bad_config_fields_and_values_exit_2(flag, words, tmp_path):
  out = _main(f'--config={SMOKE}', f'--workdir={tmp_path}', flag)
  assert out.returncode == 2, out.stderr[-2000:]
  assert words in out.stderr and 'Traceback' not in out.stderr


def test_unknown_config_argument_exits_2(tmp_path):
  out = _main('--config=experiments/configs/embedded.py:bogus', f'--workdir={tmp_path}')
  assert out.returncode == 2 and 'bogus' in out.stderr and 'Traceback' not in out.stderr


def test_unwritable_workdir_is_one_line(tmp_path):
  blocker = tmp_path / 'file'
  blocker.write_text('not a directory')
  out = _main(f'--config={SMOKE}', f'--workdir={blocker}/run', '--config.data.data_dir=/nonexistent')
  assert out.returncode == 2, out.stderr[-2000:]
  last = out.stderr.strip().splitlines()[-1]
  assert 'workdir' in last and 'not writable' in last and 'Traceback' not in out.stderr


def test_unknown_stage_is_one_line(tmp_path):
  out = _main(f'--config={SMOKE}', f'--workdir={tmp_path}', '--config.stages=("segmentation",)')
  assert out.returncode == 2 and "unknown stage 'segmentation'" in out.stderr


@pytest.mark.parametrize('flag, words', [
    ('--config.batch_size=0', '--config.batch_size=0: must be a positive integer'),
    ('--config.num_train_steps=-5', '--config.num_train_steps=-5: must be a positive number of steps, or -1'),
    ('--config.checkpoint_every_steps=0', '--config.checkpoint_every_steps=0: must be a positive number'),
    ('--config.stages=("segmentation",)', "unknown stage 'segmentation'"),
])
def test_a_bad_count_or_stage_is_one_line_and_leaves_no_workdir(flag, words, tmp_path):
  """Field cases: batch_size=0 failed after the workdir (and its run.lock) existed; num_train_steps=-5 quietly
  meant 'num_epochs'; checkpoint_every_steps=0 divided by zero at the first step."""
  workdir = tmp_path / 'run'
  out = _main(f'--config={SMOKE}', f'--workdir={workdir}', flag)
  assert out.returncode == 2, out.stderr[-2000:]
  assert words in out.stderr.strip().splitlines()[-1], out.stderr[-2000:]
  assert not workdir.exists()
