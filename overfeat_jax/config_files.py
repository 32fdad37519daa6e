"""Config files in and out: Python config modules (by path or module name) and the JSON configs on disk.

Config files are Python by design (ml_collections: `--config=path.py` runs its `get_config()`) and are loaded
by path, not imported as a package, so that `--config=` works from any directory; the configs that ship with
the package (the default, `DEFAULT_CONFIG`) are named by module path, so an installed wheel has them. The
resolved training config is saved once per run as `<workdir>/config.json` (`save_config`) and read back by
`predict`, `export` and the sweeps (`load_config`); `read_json` is the one JSON reader (one-line errors).
"""

import importlib.util
import json
import os
from types import ModuleType
from typing import Any

import jax
import ml_collections

from overfeat_jax import storage
from overfeat_jax.errors import InputError

CONFIG_FILE = 'config.json'  # the resolved training config, in the workdir (predict, export, sweeps read it)
# The CPU demo, `python -m overfeat_jax.main` without --config; a module path, so an installed wheel has it.
DEFAULT_CONFIG = 'overfeat_jax.configs.embedded'


def module_file(name: str) -> str:
  """The source file of the module `name` (e.g. `DEFAULT_CONFIG`), wherever the package is installed.

  Raises:
    InputError: no such module.
  """
  try:
    spec = importlib.util.find_spec(name)
  except ModuleNotFoundError:
    spec = None
  if spec is None or not spec.origin or not spec.origin.endswith('.py'):
    raise InputError(f'no config module {name!r}.')
  return spec.origin


def load_file(path: str, module_name: str) -> ModuleType:
  """The config module at `path` (a .py file), executed under `module_name`; one loader for every config."""
  spec = importlib.util.spec_from_file_location(module_name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_sibling(name: str, next_to: str) -> ModuleType:
  """The config module `name`.py in the directory of the file `next_to` (pass `__file__`)."""
  path = os.path.join(os.path.dirname(os.path.abspath(next_to)), f'{name}.py')
  return load_file(path, f'overfeat_configs_{name}')


def read_json(file: str, what: str) -> Any:
  """The JSON value of `file` (`what` it is, for the message); unreadable or malformed: one InputError."""
  try:
    return json.loads(storage.path(file).read_bytes().decode('utf-8'))
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise InputError(f'cannot read the {what} {file}: it is not valid JSON ({e}).') from None


def _tuples(value: Any) -> Any:
  """JSON lists back to the tuples the config files use (nested dicts stay dicts)."""
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  return value


def save_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes the resolved config (every override applied) as `workdir/config.json`: process 0, atomically."""
  if jax.process_index() == 0:
    storage.write_json_atomic(storage.path(workdir) / CONFIG_FILE, config.to_dict())


def load_config(workdir: str) -> ml_collections.ConfigDict | None:
  """The config a workdir was trained with (`save_config`), locked; None if the workdir has none.

  Raises:
    InputError: the file is not valid JSON or not a training config (no `stages`).
  """
  path = storage.path(workdir) / CONFIG_FILE
  if not path.is_file():
    return None
  data = read_json(path, 'training config')
  if not isinstance(data, dict) or 'stages' not in data:
    raise InputError(f'{path} is not a training config (no "stages" field).')
  config = ml_collections.ConfigDict(_tuples(data))
  config.lock()
  return config
