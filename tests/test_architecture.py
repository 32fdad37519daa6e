"""The import rules of docs/ARCHITECTURE.md, checked on the source (an AST walk; local imports included).

  .venv/bin/python -m pytest tests/test_architecture.py -q     # the check
  .venv/bin/python tests/test_architecture.py                  # prints the folder graph and any cycle

Rule 1: no two package folders of overfeat_jax/ import each other, directly or through other folders.
Rule 2: the bottom layer imports nothing above it: `models/` and `metrics/` import only `errors`, `box_ops`
imports only `models` and `errors`.
Rule 3: nothing inside a package folder imports an entry point (main, classify, predict, export, sweep,
preflight, build_dataset, write_folders, show_embedded) or `cli` (one-line errors and exit status 2: the entry
points' shared helper), so every command's `main` lives at the package top.
Rule 4: only the entry points, `cli`, `config_files` and `train/loop.py` import ml_collections (the config is
read once at the edge into `settings.StageSettings`); `settings` imports nothing of the package.
Rule 5: nothing outside train/ imports train/, except the entry points that run training (main, preflight).
"""

import ast
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / 'overfeat_jax'
ENTRY_POINTS = frozenset({'main', 'classify', 'predict', 'export', 'sweep', 'preflight', 'build_dataset',
                          'write_folders', 'show_embedded'})
BOTTOM = {'models': {'errors'}, 'metrics': {'errors'}, 'box_ops': {'models', 'errors'}, 'settings': set()}
# Rule 4: only these modules (paths under overfeat_jax/) read the config object (ml_collections): the entry
# points, their helper `cli`, `config_files` (which turns it into `settings.StageSettings`) and the trainer's
# loop; everything else takes typed settings or plain values.
CONFIG_READERS = frozenset({f'{e}.py' for e in ENTRY_POINTS} | {'cli.py', 'config_files.py', 'train/loop.py'})
# Rule 5: nothing outside train/ imports train/, but the entry points that run it.
TRAIN_USERS = frozenset({'main.py', 'preflight.py'})


def imported_modules(path: pathlib.Path, package_name: str = 'overfeat_jax') -> set[str]:
  """Every `<package_name>.*` module a file imports, anywhere in it (relative imports resolved)."""
  package = path.relative_to(ROOT.parent).with_suffix('').parts[:-1]  # ('overfeat_jax', 'train')
  found = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = '.'.join(package[:len(package) - node.level + 1]) if node.level else ''
      module = '.'.join(p for p in (base, node.module or '') if p)
      names = [module] + [f'{module}.{a.name}' for a in node.names]  # `from overfeat_jax import box_ops`
    else:
      continue
    found.update(n for n in names if n.split('.')[0] == package_name)
  return found


def unit(module: str) -> str | None:
  """The layer unit of `overfeat_jax.X[...]`: the folder or top-level module X (None for the package)."""
  parts = module.split('.')
  if len(parts) > 1 and ((ROOT / parts[1]).is_dir() or (ROOT / f'{parts[1]}.py').exists()):
    return parts[1]
  return None


def unit_graph() -> dict[str, set[str]]:
  """unit -> the other units it imports; units are the package folders and the top-level modules."""
  graph: dict[str, set[str]] = {}
  for path in sorted(ROOT.rglob('*.py')):
    source = path.relative_to(ROOT).parts
    src = source[0] if len(source) > 1 else path.stem
    graph.setdefault(src, set()).update(u for u in map(unit, imported_modules(path)) if u and u != src)
  return graph


def folder_cycles(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
  """Pairs of package folders that reach each other through folder-to-folder imports."""
  folders = sorted(p.name for p in ROOT.iterdir() if p.is_dir() and (p / '__init__.py').exists())
  reach = {f: graph.get(f, set()) & set(folders) for f in folders}
  for _ in folders:
    for f in folders:
      reach[f] = reach[f].union(*(reach[g] for g in reach[f]))
  return [(a, b) for i, a in enumerate(folders) for b in folders[i + 1:] if b in reach[a] and a in reach[b]]


def test_no_package_folders_import_each_other():
  assert folder_cycles(unit_graph()) == []


@pytest.mark.parametrize('unit_name', sorted(BOTTOM))
def test_bottom_layer_imports_nothing_above_it(unit_name):
  assert unit_graph().get(unit_name, set()) <= BOTTOM[unit_name]


def test_package_folders_never_import_entry_points():
  graph = unit_graph()
  folders = [p.name for p in ROOT.iterdir() if p.is_dir() and (p / '__init__.py').exists()]
  offending = {f: sorted(graph.get(f, set()) & (ENTRY_POINTS | {'cli'})) for f in folders}
  assert {f: e for f, e in offending.items() if e} == {}


def modules_importing(package_name: str) -> set[str]:
  """Paths (relative to overfeat_jax/) of the modules that import `package_name` anywhere in them."""
  return {str(p.relative_to(ROOT)) for p in ROOT.rglob('*.py') if imported_modules(p, package_name)}


def modules_importing_train() -> set[str]:
  """Paths of the modules outside train/ that import something of `overfeat_jax.train`."""
  return {str(p.relative_to(ROOT)) for p in ROOT.rglob('*.py') if p.relative_to(ROOT).parts[0] != 'train'
          and any(m.split('.')[:2] == ['overfeat_jax', 'train'] for m in imported_modules(p))}


def test_only_the_edge_reads_the_config_object():
  assert modules_importing('ml_collections') - CONFIG_READERS == set()


def test_nothing_outside_train_imports_train_but_its_entry_points():
  assert modules_importing_train() - TRAIN_USERS == set()


def test_the_config_and_train_checks_fail_on_a_violation(tmp_path, monkeypatch):
  pkg = tmp_path / 'overfeat_jax'
  files = {'tasks/a.py': 'def f():\n  import ml_collections\n', 'train/loop.py': 'import ml_collections\n',
           'sweeps/b.py': 'from ..train import loop\n', 'main.py': 'from overfeat_jax.train import loop\n',
           'inference/c.py': 'def g():\n  from overfeat_jax import train\n', 'train/d.py': 'from . import loop\n'}
  for name, body in files.items():
    (pkg / name).parent.mkdir(parents=True, exist_ok=True)
    (pkg / name).write_text(body)
  monkeypatch.setattr(sys.modules[__name__], 'ROOT', pkg)
  assert modules_importing('ml_collections') - CONFIG_READERS == {'tasks/a.py'}
  assert modules_importing_train() - TRAIN_USERS == {'sweeps/b.py', 'inference/c.py'}


def test_the_checker_sees_function_local_and_relative_imports(tmp_path, monkeypatch):
  # A folder cycle hidden in a function body and a relative import must both be found (the check can fail).
  pkg = tmp_path / 'overfeat_jax'
  for folder, body in {'a': 'def f():\n  from overfeat_jax.b import x\n', 'b': 'from ..a import y\n',
                       'c': 'import overfeat_jax.a\n'}.items():
    (pkg / folder).mkdir(parents=True)
    (pkg / folder / '__init__.py').write_text('')
    (pkg / folder / 'mod.py').write_text(body)
  monkeypatch.setattr(sys.modules[__name__], 'ROOT', pkg)
  graph = unit_graph()
  assert graph['a'] == {'b'} and graph['b'] == {'a'} and graph['c'] == {'a'}
  assert folder_cycles(graph) == [('a', 'b')]



def _warn_from(module_name: str) -> None:
  """Runs `warnings.warn(..., DeprecationWarning)` as code of the module `module_name`."""
  code = compile("import warnings\nwarnings.warn('old API', DeprecationWarning)", 'fake.py', 'exec')
  exec(code, {'__name__': module_name})  # pylint: disable=exec-used


def test_deprecation_warnings_of_the_package_are_errors_in_the_tests():
  # setup.cfg's filterwarnings: the package's own DeprecationWarnings fail the test run, a library's do not.
  with pytest.raises(DeprecationWarning, match='old API'):
    _warn_from('overfeat_jax.train.loop')
  with pytest.warns(DeprecationWarning):
    _warn_from('some_library.module')

if __name__ == '__main__':
  g = unit_graph()
  for name in sorted(g):
    print(f"{name:>14} -> {', '.join(sorted(g[name])) or '-'}")
  print('folder cycles:', folder_cycles(g) or 'none')
