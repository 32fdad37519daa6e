"""Exact resume: runs stopped by SIGTERM or killed by SIGKILL finish with bit-identical parameters; a real
two-process jax.distributed run trains and checkpoints."""

import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from overfeat_jax.checkpoint import manager as ckpt
from overfeat_jax.train import loop
from overfeat_jax.train import step as step_lib
from tests import xla_flags
from tests.train.helpers import REPO, load_config

SMOKE = 'experiments/configs/embedded.py:smoke'


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('tfds'))


def _config(data_dir, workers='0', **overrides):
  config = load_config('embedded', 'smoke')
  config.data.data_dir, config.data.worker_count = data_dir, workers
  config.num_train_steps, config.checkpoint_every_steps = 8, 2
  config.stages = ('classification',)  # resume is the loop's promise; one stage keeps these tests short
  config.update(overrides)
  config.lock()
  return config


def _final_params(workdir):
  step, params = ckpt.restore_params(os.path.join(workdir, 'classification', 'checkpoints'))
  return step, params


def _assert_identical(a, b):
  flat_a, flat_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(flat_a) == len(flat_b)
  for x, y in zip(flat_a, flat_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow
@pytest.mark.parametrize('workers', ['0', '2'])  # '2': grain worker processes, whose state is per worker
def test_sigterm_saves_and_the_resumed_run_is_bit_identical(tmp_path, data_dir, monkeypatch, workers):
  reference = loop.train_and_evaluate(_config(data_dir, workers), str(tmp_path / 'ref'))
  original = step_lib.jit_train_step

  def stop_after_three(*args, **kwargs):
    fn, calls = original(*args, **kwargs), []

    def wrapped(state, batch):
      calls.append(1)
      if len(calls) == 3:
        signal.raise_signal(signal.SIGTERM)  # what a scheduler's preemption sends
      return fn(state, batch)
    return wrapped

  monkeypatch.setattr(step_lib, 'jit_train_step', stop_after_three)
  stopped = loop.train_and_evaluate(_config(data_dir, workers), str(tmp_path / 'run'))
  assert stopped['classification']['preempted'] and stopped['classification']['saved_at'] == 3
  monkeypatch.setattr(step_lib, 'jit_train_step', original)
  resumed = loop.train_and_evaluate(_config(data_dir, workers), str(tmp_path / 'run'))
  assert resumed['classification']['start_step'] == 3
  (s1, p1), (s2, p2) = _final_params(tmp_path / 'ref'), _final_params(tmp_path / 'run')
  assert s1 == s2 == 8
  _assert_identical(p1, p2)
  assert resumed['classification']['center_crop/top1_error'] == reference['classification'][
      'center_crop/top1_error']


def _main(workdir, data_dir, *extra, env_extra=None):
  env = {'JAX_PLATFORMS': 'cpu', 'PATH': '/usr/bin:/bin', **(env_extra or {})}
  return subprocess.Popen(
      [sys.executable, '-m', 'overfeat_jax.main', f'--config={SMOKE}', f'--workdir={workdir}',
       f'--config.data.data_dir={data_dir}', '--config.num_train_steps=8', '--config.checkpoint_every_steps=2',
       "--config.stages=('classification',)", *extra], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_sigkill_at_any_moment_then_restart_is_bit_identical(tmp_path, data_dir):
  ref = _main(tmp_path / 'ref', data_dir)
  assert ref.wait(timeout=300) == 0, ref.stdout.read()[-3000:]
  proc = _main(tmp_path / 'run', data_dir)
  ckdir = tmp_path / 'run' / 'classification' / 'checkpoints'
  deadline = time.time() + 300
  while time.time() < deadline and not (ckdir.exists() and any(p.name == '2' for p in ckdir.iterdir())):
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)  # no handler, no final save: wherever it was
  proc.wait(timeout=30)
  again = _main(tmp_path / 'run', data_dir)
  assert again.wait(timeout=300) == 0, again.stdout.read()[-3000:]
  (s1, p1), (s2, p2) = _final_params(tmp_path / 'ref'), _final_params(tmp_path / 'run')
  assert s1 == s2 == 8
  _assert_identical(p1, p2)


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_processes_train_together(tmp_path, data_dir):
  """Two real jax.distributed processes (1 CPU device each) train one replicated model and save it.

  Each host reads its own shard, so a plain one-process run sees other global batches; the exact comparison
  with a one-process run reading as two hosts is tests/train/test_read_as_hosts.py.
  """
  port = _free_port()
  procs = [_main(tmp_path / 'two', data_dir, f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2',
                 f'--process_id={i}', env_extra={'XLA_FLAGS': xla_flags.xla_flags(1)})
           for i in range(2)]
  try:
    codes = [p.wait(timeout=400) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  outputs = [p.stdout.read() for p in procs]
  assert codes == [0, 0], [o[-3000:] for o in outputs]
  assert 'center_crop/top1_error' in outputs[0]  # process 0 prints the result
  step, params = _final_params(tmp_path / 'two')
  assert step == 8
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params))
