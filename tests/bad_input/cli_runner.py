"""Runs an entry point as a user would (`python -m MODULE ARGS`) and checks the project's promise about its
output: bad input -> exit 2 and exactly ONE line on stderr besides absl's log records, never a traceback."""

import os
import re
import subprocess
import sys
from pathlib import Path

from tests import xla_flags

REPO = Path(__file__).resolve().parents[2]
LOG_RECORD = re.compile(r'^[IWEF]\d{4} \d')  # absl: I1125 13:45:08.845091 ... (logs, not errors)


def run_cli(module: str, *args: str, timeout: float = 300, prefix: tuple[str, ...] = (),
            cwd: Path = REPO) -> subprocess.CompletedProcess:
  env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS=xla_flags.xla_flags(1),
             TF_CPP_MIN_LOG_LEVEL='3', PYTHONPATH=str(REPO))
  return subprocess.run([*prefix, sys.executable, '-m', module, *map(str, args)], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=timeout, check=False)


def error_lines(stderr: str) -> list[str]:
  return [line for line in stderr.splitlines() if line.strip() and not LOG_RECORD.match(line)]


def assert_one_line_error(done: subprocess.CompletedProcess, *must_contain: str) -> str:
  """Exit 2, no traceback, one line of error (returned), containing each of `must_contain`."""
  detail = f'rc={done.returncode}\nstderr tail:\n{done.stderr[-3000:]}'
  assert 'Traceback' not in done.stderr, detail
  lines = error_lines(done.stderr)
  assert done.returncode == 2, detail
  assert len(lines) == 1, detail
  for text in must_contain:
    assert text in lines[0], detail
  return lines[0]


def assert_ok(done: subprocess.CompletedProcess) -> None:
  assert done.returncode == 0 and 'Traceback' not in done.stderr, f'rc={done.returncode}\n{done.stderr[-3000:]}'
