"""What every launcher shares: `--config.X=Y` pass-through and the trainer's command line."""

import os
import shlex
import socket
import subprocess
import sys
from typing import Sequence

from overfeat_jax.errors import InputError

TRAINER_MODULE = 'overfeat_jax.main'


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
  """Takes the `--config.FIELD=VALUE` overrides out of argv, before absl sees (and rejects) them.

  Everything after a bare `--` is also passed to the trainer unchanged.
  """
  argv = list(argv)
  tail = []
  if '--' in argv:
    cut = argv.index('--')
    argv, tail = argv[:cut], argv[cut + 1:]
  own, overrides = [], []
  for arg in argv:
    if arg.startswith('--config.'):
      if '=' not in arg:
        raise InputError(f'write config overrides as --config.FIELD=VALUE, got {arg!r}')
      overrides.append(arg)
    else:
      own.append(arg)
  return own, overrides + tail


def config_file(config: str) -> str:
  """The file part of an ml_collections config flag value (`path.py:arg` -> `path.py`)."""
  return config.split(':', 1)[0]


def check_config(config: str | None, base_dir: str = '.') -> None:
  """Fails early, before any job is queued or any pod touched, when the config file is not there."""
  if not config:
    raise InputError('--config is required (an experiments/configs/*.py file, optionally with :ARG)')
  path = os.path.join(base_dir, config_file(config))
  if not os.path.isfile(path):
    raise InputError(f'config file {path} does not exist')


def trainer_command(python: str, config: str, workdir: str, overrides: Sequence[str],
                    module: str = TRAINER_MODULE) -> list[str]:
  """The one trainer invocation every launcher ends with (same flags on every host)."""
  if not workdir:
    raise InputError('--workdir is required')
  return [python, '-m', module, f'--config={config}', f'--workdir={workdir}', *overrides]


def free_port() -> int:
  """A port the OS says is free now (another program could take it before the coordinator binds it)."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def show(cmd: Sequence[str]) -> str:
  return '$ ' + shlex.join(cmd)


def run_checked(cmd: Sequence[str], what: str) -> None:
  """Runs a command with inherited output (so logs stream); one-line error if it fails or is missing."""
  print(show(cmd), flush=True)
  try:
    code = subprocess.run(list(cmd), check=False).returncode
  except FileNotFoundError:
    raise InputError(f'{what}: command {cmd[0]!r} not found') from None
  if code != 0:
    raise InputError(f'{what} failed with exit code {code}')


def main_with_overrides(main) -> None:
  """Runs `main(argv, overrides)` under `cli.run`, with the overrides removed from what absl parses."""
  from overfeat_jax import cli  # pylint: disable=g-import-not-at-top
  try:
    sys.argv, overrides = split_overrides(sys.argv)
  except InputError as e:
    print(f'{sys.argv[0].split("/")[-1]}: error: {e}', file=sys.stderr)
    sys.exit(2)
  cli.run(lambda argv: main(argv, overrides))
