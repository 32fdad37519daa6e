"""Loads a config file of `experiments/configs/` by path, for config files that build on each other.

Config files are Python by design (ml_collections: `--config=path.py` runs its `get_config()`) and are loaded
by path, not imported as a package, so that `--config=` works from any directory. One loader for all of them.
"""

import importlib.util
import os
from types import ModuleType


def load_sibling(name: str, next_to: str) -> ModuleType:
  """The config module `name`.py in the directory of the file `next_to` (pass `__file__`)."""
  path = os.path.join(os.path.dirname(os.path.abspath(next_to)), f'{name}.py')
  spec = importlib.util.spec_from_file_location(f'overfeat_configs_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
