"""Runs an absl `main` so that bad input ends in one line on stderr and exit status 2, never a traceback."""

import sys
from typing import Callable

from absl import app

from overfeat_jax.errors import InputError

# Errors that mean "the user gave us something we cannot use". Anything else is a bug and keeps its traceback.
USER_ERRORS = (InputError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def _exit_on_user_error(main: Callable[[list[str]], None]) -> Callable[[list[str]], None]:
  def wrapped(argv: list[str]) -> None:
    try:
      main(argv)
    except USER_ERRORS as e:
      name = 'error' if isinstance(e, InputError) else type(e).__name__
      print(f'{sys.argv[0].split("/")[-1]}: {name}: {e}', file=sys.stderr)
      sys.exit(2)
  return wrapped


def run(main: Callable[[list[str]], None]) -> None:
  """`absl.app.run(main)`, with user errors (and absl flag errors, which absl already maps to 1 line) -> exit 2."""
  try:
    app.run(_exit_on_user_error(main))
  except SystemExit as e:
    # absl exits with 1 on a bad flag after printing usage; the project promises 2 for every bad input.
    if e.code == 1:
      sys.exit(2)
    raise
