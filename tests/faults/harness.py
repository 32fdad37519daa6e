"""Real training processes for fault injection: start `python -m overfeat_jax.main`, watch its log and its
checkpoint directory, hit it with signals, and read back what it left on disk.

Every run is the smoke config on the embedded dataset with 1 CPU device and JAX's persistent compilation cache
(shared by the session), so that after the first process each start costs seconds, not a compile. Runs log
every step (`train [...] N/TOTAL`), which is what the tests watch to pick their moments.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from tests import xla_flags

REPO = Path(__file__).resolve().parents[2]
STEP_LINE = re.compile(r'train \[[#.]*\]\s+\d+% (\d+)/(\d+) \|')
RESUMED = re.compile(r'Resumed classification from step (\d+)')
TMP_MARK = 'orbax-checkpoint-tmp'
CLASSIFICATION_ONLY = "--config.stages=('classification',)"


def trainer_env(cache_dir: str | os.PathLike) -> dict[str, str]:
  """One CPU device compiled cheaply (tests/xla_flags.py), the shared compilation cache (every compile cached),
  unbuffered output."""
  env = dict(os.environ)
  env.update(JAX_PLATFORMS='cpu', XLA_FLAGS=xla_flags.xla_flags(1),
             JAX_COMPILATION_CACHE_DIR=str(cache_dir), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0', PYTHONUNBUFFERED='1', TF_CPP_MIN_LOG_LEVEL='3')
  return env


def trainer_flags(workdir: str | os.PathLike, data_dir: str | os.PathLike, steps: int, every: int,
                  extra: Sequence[str] = ()) -> list[str]:
  """Flags of a smoke run of `steps` steps, checkpointing every `every`, with a cheap final evaluation; the
  classification stage only (the faults are the same in every stage, and the tests read its checkpoints)."""
  return ['--config=experiments/configs/embedded.py:smoke', f'--workdir={workdir}', CLASSIFICATION_ONLY,
          f'--config.data.data_dir={data_dir}', f'--config.num_train_steps={steps}',
          '--config.log_every_steps=1', f'--config.checkpoint_every_steps={every}',
          '--config.eval.scales=(72,)', '--config.eval.flips=False', *extra]


class Trainer:
  """One training process; its stdout+stderr go to `log_path`, which the test polls."""

  def __init__(self, flags: Sequence[str], env: dict[str, str], log_path: str | os.PathLike,
               module: str = 'overfeat_jax.main', prefix: Sequence[str] = ()):
    self.log_path = Path(log_path)
    self._log = open(self.log_path, 'wb')  # pylint: disable=consider-using-with
    self.proc = subprocess.Popen([*prefix, sys.executable, '-m', module, *flags], cwd=REPO, env=env,
                                 stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

  def text(self) -> str:
    return self.log_path.read_text(errors='replace')

  def last_step(self) -> int:
    """The last training step the process logged (0 if none yet)."""
    steps = STEP_LINE.findall(self.text())
    return int(steps[-1][0]) if steps else 0

  def wait_for(self, what: str, predicate: Callable[[], bool], timeout: float = 240.0,
               poll: float = 0.002) -> None:
    """Polls `predicate` until true; fails with the log's tail if the process ends or time runs out."""
    deadline = time.monotonic() + timeout
    while not predicate():
      if self.proc.poll() is not None:
        raise AssertionError(f'process ended (rc {self.proc.returncode}) before {what}:\n{self.tail()}')
      if time.monotonic() > deadline:
        self.kill()
        raise AssertionError(f'timed out waiting for {what}:\n{self.tail()}')
      time.sleep(poll)

  def signal(self, sig: int) -> None:
    os.killpg(self.proc.pid, sig)  # the whole group: grain or orbax helpers go too

  def kill(self) -> None:
    """SIGKILL, and wait until it is gone (nothing it does afterwards can touch the disk)."""
    if self.proc.poll() is None:
      self.signal(signal.SIGKILL)
    self.wait(60)

  def wait(self, timeout: float = 300.0) -> int:
    try:
      rc = self.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
      self.signal(signal.SIGKILL)
      self.proc.wait()
      raise AssertionError(f'still running after {timeout} s:\n{self.tail()}') from None
    finally:
      if self.proc.returncode is not None:
        self._log.close()
    return rc

  def tail(self, n: int = 40) -> str:
    return '\n'.join(self.text().splitlines()[-n:])


def children(pid: int) -> dict[int, str]:
  """{pid: command line} of the direct children of `pid` (from /proc): a launcher's workers."""
  found = {}
  for entry in Path('/proc').iterdir():
    if not entry.name.isdigit():
      continue
    try:
      stat = (entry / 'stat').read_text()
      ppid = int(stat.rsplit(')', 1)[1].split()[1])
      if ppid == pid:
        found[int(entry.name)] = (entry / 'cmdline').read_bytes().replace(b'\0', b' ').decode()
    except (OSError, IndexError, ValueError):
      continue
  return found


def launched_flags(num_processes: int, devices: int, flags: Sequence[str]) -> list[str]:
  """`launch.local` flags running the trainer `flags` as `num_processes` x `devices` CPU devices."""
  return [f'--num_processes={num_processes}', f'--devices_per_process={devices}', '--grace_s=5',
          '--timeout_s=900', '--', *flags]


def worker(run: Trainer, process_id: int) -> int:
  """The pid of worker `process_id` of a `launch.local` run."""
  found = [pid for pid, cmd in children(run.proc.pid).items() if f'--process_id={process_id}' in cmd]
  assert len(found) == 1, children(run.proc.pid)
  return found[0]


def kill_job(run: Trainer) -> None:
  """SIGKILLs a `launch.local` run as a whole: every worker (each leads its own process group) and the
  launcher at once, so no process can write anything afterwards."""
  for pid in children(run.proc.pid):
    try:
      os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
      pass
  run.kill()


def checkpoint_dir(workdir: str | os.PathLike) -> Path:
  return Path(workdir) / 'classification' / 'checkpoints'


def complete_steps(workdir: str | os.PathLike) -> list[int]:
  """Steps whose checkpoint directory was finalised (orbax renames `<step>.orbax-checkpoint-tmp*` at the end)."""
  d = checkpoint_dir(workdir)
  return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


def tmp_checkpoints(workdir: str | os.PathLike) -> list[str]:
  """Checkpoint directories still being written (async save in flight)."""
  d = checkpoint_dir(workdir)
  try:
    return sorted(p.name for p in d.iterdir() if TMP_MARK in p.name)
  except FileNotFoundError:
    return []


def resumed_from(log: str) -> int | None:
  found = RESUMED.findall(log)
  return int(found[-1]) if found else None


def final_params(workdir: str | os.PathLike) -> tuple[int, dict[str, np.ndarray]]:
  """(step, params flattened to {path: array}) of the run's latest checkpoint, read with the project's code."""
  import jax  # pylint: disable=g-import-not-at-top
  from overfeat_jax.checkpoint import manager  # pylint: disable=g-import-not-at-top
  step, params = manager.restore_params(str(checkpoint_dir(workdir)))
  flat = {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(params)}
  return step, flat


def jax_leaves(tree) -> list[np.ndarray]:
  import jax  # pylint: disable=g-import-not-at-top
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def assert_same_params(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
  """Bit-identical parameter trees."""
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
