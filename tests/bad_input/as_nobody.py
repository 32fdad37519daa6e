"""`python tests/bad_input/as_nobody.py MODULE ARGS...`: runs MODULE as __main__ after dropping root to the
`nobody` user, so that a directory without write permission really refuses writes (root ignores permissions).

Nothing may be read from the clone or the interpreter's site-packages after the drop: either may live under a
directory that nobody cannot enter (`/root`, a 0700 `mktemp -d`, a 0700 home). So, while still root, this script
imports every module of the package except the entry points (which define flags; their imports, including the
third-party ones, come along) and compiles MODULE's code; after the drop it runs that code as `__main__`. Files the
run reads (its config) must be readable by nobody: the caller puts them in such a directory.
"""

import ast
import importlib
import importlib.util
import os
import pkgutil
import sys
import types

import overfeat_jax

NOBODY = 65534


def _is_entry_point(spec) -> bool:
  with open(spec.origin, encoding='utf-8') as f:
    return 'flags.DEFINE' in f.read()


def import_package() -> None:
  """Imports every module of overfeat_jax that defines no flags (a module defining flags runs as `__main__`)."""
  for info in pkgutil.walk_packages(overfeat_jax.__path__, 'overfeat_jax.'):
    spec = importlib.util.find_spec(info.name)
    if spec.origin and spec.origin.endswith('.py') and not _is_entry_point(spec):
      importlib.import_module(info.name)


def import_dependencies(code_path: str) -> None:
  """Imports what the entry point's own top-level imports name (e.g. `ml_collections.config_flags`, which no
  library module imports), so that running it after the drop finds them in `sys.modules`."""
  with open(code_path, encoding='utf-8') as f:
    tree = ast.parse(f.read())
  for node in tree.body:
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      names = [node.module] + [f'{node.module}.{alias.name}' for alias in node.names]
    else:
      continue
    for name in names:
      spec = None
      try:
        spec = importlib.util.find_spec(name)
      except (ImportError, ValueError):
        pass  # `from m import attribute`: not a module
      if spec is not None and not (spec.origin and spec.origin.endswith('.py') and name.startswith('overfeat_jax')
                                   and _is_entry_point(spec)):
        importlib.import_module(name)


def main_module(name: str) -> tuple[types.ModuleType, types.CodeType]:
  """A fresh `__main__` module for `name` and its compiled code (read now, while the file is readable)."""
  spec = importlib.util.find_spec(name)
  module = types.ModuleType('__main__')
  module.__file__, module.__loader__, module.__package__ = spec.origin, spec.loader, spec.parent
  return module, spec.loader.get_code(name)


if __name__ == '__main__':
  import_package()
  target, code = main_module(sys.argv[1])
  import_dependencies(target.__file__)
  os.setgroups([])
  os.setgid(NOBODY)
  os.setuid(NOBODY)
  sys.argv = [os.path.basename(target.__file__), *sys.argv[2:]]
  sys.modules['__main__'] = target
  exec(code, target.__dict__)  # pylint: disable=exec-used
