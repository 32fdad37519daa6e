r"""Runs N real processes of a module on this machine, wired together with jax.distributed over localhost.

This exercises the multi-host code path (process-sliced input, global arrays, cross-process collectives,
multi-host checkpoints) on one CPU machine. Each process gets `--coordinator_address=127.0.0.1:PORT
--num_processes=N --process_id=i` appended to its flags, `JAX_PLATFORMS=cpu` and D fake CPU devices. Output
lines are prefixed `[p0]`, `[p1]`, ...

A process that dies (crash, OOM kill) makes jax's peers abort only after the initialization/heartbeat timeout,
so the launcher stops the others itself, within `--grace_s`, and exits 3 naming the process and exit code.
`--timeout_s` bounds the whole run (exit 124).

  python -m launch.local --num_processes=2 --devices_per_process=2 -- \
      --config=experiments/configs/fast_imagenet.py:smoke --workdir=/tmp/of_2proc
"""

import dataclasses
import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Mapping, Sequence, TextIO

from absl import flags

from launch import common
from overfeat_jax import cli
from overfeat_jax.errors import InputError
FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Only the command line defines flags, so that tests can import several launchers."""
  flags.DEFINE_integer('num_processes', 2, 'How many processes to start.')
  flags.DEFINE_integer('devices_per_process', 1, 'Fake CPU devices in each process.')
  flags.DEFINE_string('module', 'overfeat_jax.main', 'Module each process runs (`python -m`).')
  flags.DEFINE_float('timeout_s', 3600.0, 'Stop everything and exit 124 after this many seconds.')
  flags.DEFINE_float('grace_s', 5.0, 'After a failure: seconds between SIGTERM and SIGKILL.')
  flags.DEFINE_integer('port', 0, 'Coordinator port on 127.0.0.1; 0 picks a free one.')


EXIT_WORKER_FAILED = 3  # not 1: `cli.run` turns 1 (absl usage errors) into 2, "bad input"
EXIT_TIMEOUT = 124
_DEVICE_FLAG = re.compile(r'--xla_force_host_platform_device_count=\S*')


@dataclasses.dataclass(frozen=True)
class Outcome:
  """How a run ended. `failed`: (process index, exit code) of the first process that failed, if any."""
  exit_code: int
  message: str
  failed: tuple[int, int] | None = None


def worker_env(base: dict[str, str], devices: int) -> dict[str, str]:
  """The environment of one worker: CPU only, `devices` fake devices, unbuffered output."""
  env = dict(base)
  xla = _DEVICE_FLAG.sub('', env.get('XLA_FLAGS', '')).strip()
  env['XLA_FLAGS'] = f'{xla} --xla_force_host_platform_device_count={devices}'.strip()
  env['JAX_PLATFORMS'] = 'cpu'
  env['PYTHONUNBUFFERED'] = '1'
  return env


def worker_command(module: str, module_args: Sequence[str], port: int, num_processes: int,
                   process_id: int) -> list[str]:
  return [sys.executable, '-m', module, *module_args, f'--coordinator_address=127.0.0.1:{port}',
          f'--num_processes={num_processes}', f'--process_id={process_id}']


def _pump(proc: subprocess.Popen, prefix: str, out: TextIO, lock: threading.Lock) -> None:
  """Copies one worker's output to `out`, line by line, each line tagged with the worker's prefix."""
  for line in proc.stdout:
    with lock:
      out.write(f'{prefix} {line}' if line.endswith('\n') else f'{prefix} {line}\n')
      out.flush()


def _describe(code: int) -> str:
  if code < 0:
    try:
      return f'{code} ({signal.Signals(-code).name})'
    except ValueError:
      return str(code)
  return str(code)


def _stop(procs: Sequence[subprocess.Popen], grace_s: float) -> None:
  """SIGTERM to every live worker's process group, then SIGKILL to those still alive after `grace_s`."""
  for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
    live = [p for p in procs if p.poll() is None]
    for p in live:
      try:
        os.killpg(p.pid, sig)  # each worker leads its own group (start_new_session): grain workers go too
      except ProcessLookupError:
        pass
    deadline = time.monotonic() + wait_s
    for p in live:
      try:
        p.wait(timeout=max(0.0, deadline - time.monotonic()))
      except subprocess.TimeoutExpired:
        pass


def supervise(procs: Sequence[subprocess.Popen], timeout_s: float, grace_s: float,
              poll_s: float = 0.05) -> Outcome:
  """Waits for all workers; on the first failure or the timeout, stops the rest within `grace_s`."""
  deadline = time.monotonic() + timeout_s
  while True:
    codes = [p.poll() for p in procs]
    bad = next(((i, c) for i, c in enumerate(codes) if c not in (None, 0)), None)
    if bad is not None:
      others = sum(c is None for c in codes)
      _stop(procs, grace_s)
      return Outcome(EXIT_WORKER_FAILED, f'process {bad[0]} exited with code {_describe(bad[1])}; '
                     f'stopped the {others} other running process(es)', bad)
    if all(c == 0 for c in codes):
      return Outcome(0, f'all {len(procs)} processes finished')
    if time.monotonic() > deadline:
      _stop(procs, grace_s)
      return Outcome(EXIT_TIMEOUT, f'timed out after {timeout_s:g} s; stopped all {len(procs)} processes')
    time.sleep(poll_s)


def launch(module: str, module_args: Sequence[str], num_processes: int, devices_per_process: int,
           timeout_s: float, grace_s: float = 5.0, port: int = 0, out: TextIO = sys.stdout,
           env_extra: Mapping[str, str] | None = None) -> Outcome:
  """Starts the workers, streams their tagged output to `out`, and returns how the run ended.

  `env_extra` is added to every worker's environment (after the CPU settings, so it can override them).
  """
  if num_processes < 1 or devices_per_process < 1:
    raise InputError(f'need at least 1 process and 1 device, got {num_processes} and {devices_per_process}')
  if timeout_s <= 0 or grace_s < 0:
    raise InputError(f'timeout_s must be positive and grace_s non-negative, got {timeout_s}, {grace_s}')
  port = port or common.free_port()
  env = {**worker_env(dict(os.environ), devices_per_process), **(env_extra or {})}
  lock, procs, pumps = threading.Lock(), [], []
  try:
    for i in range(num_processes):
      procs.append(subprocess.Popen(worker_command(module, module_args, port, num_processes, i), env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    start_new_session=True))
      pumps.append(threading.Thread(target=_pump, args=(procs[-1], f'[p{i}]', out, lock), daemon=True))
      pumps[-1].start()
    outcome = supervise(procs, timeout_s, grace_s)
  finally:
    _stop(procs, grace_s)  # also on Ctrl-C or an exception: never leave workers behind
  for t in pumps:
    t.join(timeout=5.0)
  return outcome


def main(argv: list[str]) -> None:
  module_args = argv[1:]
  outcome = launch(FLAGS.module, module_args, FLAGS.num_processes, FLAGS.devices_per_process, FLAGS.timeout_s,
                   FLAGS.grace_s, FLAGS.port)
  print(f'launch.local: {outcome.message}', file=sys.stderr)
  sys.exit(outcome.exit_code)


if __name__ == '__main__':
  _define_flags()
  signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # SIGTERM -> SystemExit -> `finally` stops workers
  cli.run(main)
