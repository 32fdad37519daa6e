"""The import rules of docs/ARCHITECTURE.md, checked on the source (an AST walk; local imports included).

  .venv/bin/python -m pytest tests/test_architecture.py -q     # the check
  .venv/bin/python tests/test_architecture.py                  # prints the folder graph and any cycle

Rule 1: no two package folders of overfeat_jax/ import each other, directly or through other folders.
Rule 2: the bottom layer imports nothing above it: `models/` and `metrics/` import only `errors`, `box_ops`
imports only `models` and `errors`.
Rule 3: nothing inside a package folder imports an entry point (main, classify, predict, export, sweep,
preflight, build_dataset, write_folders, show_embedded) or `cli` (one-line errors and exit status 2: the entry
points' shared helper), so every command's `main` lives at the package top.
"""

import ast
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / 'overfeat_jax'
ENTRY_POINTS = frozenset({'main', 'classify', 'predict', 'export', 'sweep', 'preflight', 'build_dataset',
                          'write_folders', 'show_embedded'})
BOTTOM = {'models': {'errors'}, 'metrics': {'errors'}, 'box_ops': {'models', 'errors'}}


def imported_modules(path: pathlib.Path) -> set[str]:
  """Every `overfeat_jax.*` module a file imports, anywhere in it (relative imports resolved)."""
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
    found.update(n for n in names if n.split('.')[0] == 'overfeat_jax')
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
