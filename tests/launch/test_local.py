"""`launch.local` for real: two jax.distributed processes on localhost, failure handling, timeouts."""

import importlib.util
import io
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest

from launch import local

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
WORKER = 'tests.launch._allreduce_worker'


def _start_launcher(*args, timeout_s=60):
  cmd = [sys.executable, '-m', 'launch.local', f'--timeout_s={timeout_s}', *args]
  return subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_files(paths, timeout_s):
  deadline = time.monotonic() + timeout_s
  while not all(p.exists() and p.read_text() for p in paths):
    if time.monotonic() > deadline:
      pytest.fail(f'workers did not write {paths} within {timeout_s} s')
    time.sleep(0.1)


def test_worker_env_replaces_the_device_count_and_forces_cpu():
  env = local.worker_env({'XLA_FLAGS': '--foo --xla_force_host_platform_device_count=8', 'A': '1'}, 3)
  assert env['XLA_FLAGS'] == '--foo --xla_force_host_platform_device_count=3'
  assert (env['JAX_PLATFORMS'], env['PYTHONUNBUFFERED'], env['A']) == ('cpu', '1', '1')


def test_worker_command_appends_the_cluster_flags():
  cmd = local.worker_command('m.x', ['--config=c.py', '--config.a=1'], 1234, 2, 1)
  assert cmd[1:] == ['-m', 'm.x', '--config=c.py', '--config.a=1', '--coordinator_address=127.0.0.1:1234',
                     '--num_processes=2', '--process_id=1']


def test_bad_sizes_are_input_errors():
  with pytest.raises(local.InputError, match='at least 1 process'):
    local.launch(WORKER, [], 0, 1, 10.0)
  with pytest.raises(local.InputError, match='timeout_s'):
    local.launch(WORKER, [], 1, 1, 0.0)


def test_supervise_stops_the_others_when_one_fails():
  sleeper = [sys.executable, '-c', 'import time; time.sleep(60)']
  procs = [subprocess.Popen(sleeper, start_new_session=True),
           subprocess.Popen([sys.executable, '-c', 'raise SystemExit(7)'], start_new_session=True)]
  start = time.monotonic()
  outcome = local.supervise(procs, timeout_s=30, grace_s=1)
  assert time.monotonic() - start < 10
  assert outcome.failed == (1, 7) and outcome.exit_code == local.EXIT_WORKER_FAILED
  assert outcome.message == 'process 1 exited with code 7; stopped the 1 other running process(es)'
  assert procs[0].returncode == -signal.SIGTERM


@pytest.mark.multiprocess
def test_two_processes_run_a_real_allreduce():
  launcher = _start_launcher('--num_processes=2', '--devices_per_process=2', f'--module={WORKER}')
  out, err = launcher.communicate(timeout=120)
  assert launcher.returncode == 0, out + err
  for i in range(2):
    assert f'[p{i}] allreduce ok: process {i} of 2, 4 devices, sum 36 == 36' in out
  assert all(line.startswith(('[p0] ', '[p1] ')) for line in out.splitlines())
  assert err.strip().endswith('launch.local: all 2 processes finished')


def test_in_process_launch_tags_output(tmp_path):
  buf = io.StringIO()
  prog = tmp_path / 'hello.py'
  prog.write_text('import sys; print("hi", sys.argv[1:]); print("partial", end="")\n')
  outcome = local.launch('hello', ['--x=1'], 1, 1, 30.0, out=buf, env_extra={'PYTHONPATH': str(tmp_path)})
  assert outcome.exit_code == 0
  lines = buf.getvalue().splitlines()
  assert len(lines) == 2 and lines[1] == '[p0] partial'
  assert re.fullmatch(r"\[p0\] hi \['--x=1', '--coordinator_address=127\.0\.0\.1:\d+', '--num_processes=1', "
                      r"'--process_id=0'\]", lines[0]), lines[0]


@pytest.mark.multiprocess
def test_killing_one_worker_stops_the_run_in_bounded_time(tmp_path):
  launcher = _start_launcher('--num_processes=2', '--grace_s=2', f'--module={WORKER}', '--',
                             f'--pid_dir={tmp_path}', '--sleep_s=120')
  pid_files = [tmp_path / 'p0.pid', tmp_path / 'p1.pid']
  try:
    _wait_for_files(pid_files, timeout_s=60)
    os.kill(int(pid_files[1].read_text()), signal.SIGKILL)  # a worker this test started, through the launcher
    killed_at = time.monotonic()
    out, err = launcher.communicate(timeout=60)
  finally:
    if launcher.poll() is None:
      launcher.kill()
  assert time.monotonic() - killed_at < 15
  assert launcher.returncode == local.EXIT_WORKER_FAILED
  assert ('launch.local: process 1 exited with code -9 (SIGKILL); stopped the 1 other running process(es)'
          in err)
  with pytest.raises(ProcessLookupError):  # the surviving worker is gone too
    os.kill(int(pid_files[0].read_text()), 0)


@pytest.mark.multiprocess
def test_timeout_stops_everything():
  launcher = _start_launcher('--num_processes=2', '--grace_s=1', f'--module={WORKER}', '--', '--sleep_s=120',
                             timeout_s=4)
  start = time.monotonic()
  out, err = launcher.communicate(timeout=60)
  assert time.monotonic() - start < 30
  assert launcher.returncode == local.EXIT_TIMEOUT, out + err
  assert 'launch.local: timed out after 4 s; stopped all 2 processes' in err


def _prebuild_embedded_smoke_data(config_path: pathlib.Path, data_dir: pathlib.Path) -> None:
  """Builds the smoke config's dataset once: two trainer processes building it at once race in tfds."""
  from overfeat_jax.config_files import input_settings  # pylint: disable=g-import-not-at-top
  from overfeat_jax.train import inputs  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location('embedded_config_for_test', config_path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config('smoke')
  config.data.data_dir = str(data_dir)
  data = input_settings(config, 'classification')
  for split in (config.data.train_split, config.data.eval_split):
    inputs.open_split(data, split)


@pytest.mark.multiprocess
@pytest.mark.slow
def test_real_trainer_runs_on_two_processes(tmp_path):
  """About 80 s on 2 busy cores: the real trainer (embedded smoke config) as 2 processes x 2 devices."""
  if importlib.util.find_spec('overfeat_jax.main') is None:
    pytest.skip('overfeat_jax.main does not exist yet (the trainer is built in parallel)')
  config = REPO_ROOT / 'experiments' / 'configs' / 'embedded.py'
  if not config.exists():
    pytest.skip(f'{config} does not exist yet: the trainer test needs the embedded smoke config')
  _prebuild_embedded_smoke_data(config, tmp_path / 'data')
  launcher = _start_launcher('--num_processes=2', '--devices_per_process=2', '--', f'--config={config}:smoke',
                             f'--workdir={tmp_path / "work"}', f'--config.data.data_dir={tmp_path / "data"}',
                             timeout_s=540)
  out, err = launcher.communicate(timeout=600)
  assert launcher.returncode == 0, out[-4000:] + err[-4000:]
  for i in range(2):
    assert f'[p{i}] ' in out
    assert f'jax.distributed ready: process {i} of 2, 2 local of 4 global devices.' in out
  assert '[p0] classification: center_crop/top1_error' in out  # only process 0 prints the results
  assert '[p1] classification: center_crop/top1_error' not in out
  assert err.strip().endswith('launch.local: all 2 processes finished')
