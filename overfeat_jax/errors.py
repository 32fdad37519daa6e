"""The project's one error type for bad input (files, flags, configs).

Library code raises `InputError` with a message a user can act on; the command-line entry points turn it
(and the other input errors listed in `overfeat_jax.cli`) into one line on stderr and exit status 2.
"""


class InputError(ValueError):
  """Bad user input: a missing or malformed file, an invalid flag or config value."""


def moved_command(old: str, new: str) -> None:
  """For `python -m OLD` of a command that moved to NEW: one line on stderr, exit status 2 (a module that is a
  library now would otherwise run nothing and exit 0, as if the old command had done its work)."""
  import sys  # pylint: disable=g-import-not-at-top  (only on this path)
  print(f'{old} is a library now: run python -m {new} (same flags)', file=sys.stderr)
  sys.exit(2)
