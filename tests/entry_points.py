"""Importing several entry points (classify, predict, main, ...) into one test process.

Each entry point defines its absl flags when imported, and some share a name (`--json` in classify and predict,
`--config` in predict and main): absl refuses the second definition (DuplicateFlagError). Every xdist worker
collects every test file, so two files that import two such entry points would break each other's collection.
`import_entry_point` removes the earlier definition of a clashing flag and imports again; the clashing flags of
the entry points mean the same thing, and the tests that call an entry point's `main` in-process pass its flags
explicitly.
"""

import importlib
import re
import sys
from types import ModuleType

from absl import flags


def import_entry_point(name: str) -> ModuleType:
  """`overfeat_jax.<name>`, imported even when another entry point defined one of its flags first."""
  module_name = f'overfeat_jax.{name}'
  for _ in range(20):
    try:
      return importlib.import_module(module_name)
    except (flags.DuplicateFlagError, SystemExit) as e:
      # `main` turns a failing config flag definition into one error line and exit 2 (cli.bad_flags).
      error = e if isinstance(e, flags.DuplicateFlagError) else e.__context__
      clash = re.search(r"The flag '([^']+)' is defined twice", str(error))
      if not isinstance(error, flags.DuplicateFlagError) or clash is None:
        raise
      delattr(flags.FLAGS, clash.group(1))
      sys.modules.pop(module_name, None)
  raise RuntimeError(f'{module_name}: too many clashing flags')
