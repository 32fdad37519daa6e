"""The project's one error type for bad input (files, flags, configs).

Library code raises `InputError` with a message a user can act on; the command-line entry points turn it
(and the other input errors listed in `overfeat_jax.cli`) into one line on stderr and exit status 2.
"""


class InputError(ValueError):
  """Bad user input: a missing or malformed file, an invalid flag or config value."""
