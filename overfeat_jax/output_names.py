"""Names of per-input output files: one rule, so that no input's output ever overwrites another's.

The rule (docs/classify.md, docs/localization_detection.md, docs/guarantees.md):
  * an input is named by its file stem: `photos/cat.jpg` -> `cat`;
  * inputs that share a stem are named by the stem prefixed with as many of their parent directories as it takes
    to tell them apart, joined by `_`: `a/x.png`, `b/x.png` -> `a_x`, `b_x`; `a/c/x.png`, `b/c/x.png` ->
    `a_c_x`, `b_c_x` (parents of the absolute path, so `x.png` and `../x.png` work too);
  * inputs that differ only by extension keep it: `x.png`, `x.jpg` -> `x_png`, `x_jpg`;
  * the same file given twice is refused (`InputError`): its two outputs would be one file; so are the rare
    paths whose every name is another's (`/a_b/x.png` and `/a/b/x.png`).
The names depend only on the list of inputs (not on which of them turn out unusable), so they are stable.
A rerun into the same outputs replaces them, and says so in one line on stderr (`note_replaced`): `prog: note:
replaced 2 earlier outputs: ...`.
"""

import os
from typing import Sequence

from overfeat_jax import storage
from overfeat_jax.errors import InputError


def _parts(path: str) -> list[str]:
  """Directory names of the absolute path (a URL keeps its own), last one the file name."""
  if '://' not in path:
    path = os.path.abspath(path)
  return [p for p in path.replace('\\', '/').split('/') if p]


def _name(parts: list[str], depth: int, keep_extension: bool) -> str:
  stem, ext = os.path.splitext(parts[-1])
  last = f'{stem}_{ext.lstrip(".")}' if keep_extension and ext else stem
  return '_'.join(parts[-depth:-1] + [last])


def distinct_stems(paths: Sequence[str]) -> list[str]:
  """One distinct output name (no directory, no extension) per input path, by the module's rule.

  Args:
    paths: the inputs, in order (files or URLs).

  Returns:
    names [len(paths)], e.g. ['a_x', 'b_x', 'y'] for ['a/x.png', 'b/x.png', 'y.jpg'].

  Raises:
    InputError: a file is given twice (the same absolute path).
  """
  parts = [_parts(os.fspath(p)) for p in paths]
  seen: dict[tuple[str, ...], str] = {}
  for path, p in zip(paths, parts):
    if tuple(p) in seen:
      raise InputError(f'image {path} is given twice ({seen[tuple(p)]}): its outputs would overwrite each other')
    seen[tuple(p)] = os.fspath(path)
  depth, extension = [1] * len(paths), [False] * len(paths)
  while True:
    names = [_name(p, d, e) for p, d, e in zip(parts, depth, extension)]
    clashing = [i for i, n in enumerate(names) if names.count(n) > 1]
    if not clashing:
      return names
    grown = False
    for i in clashing:
      same_folder = any(j != i and names[j] == names[i] and parts[j][:-1] == parts[i][:-1] for j in clashing)
      if same_folder and not extension[i]:
        extension[i], grown = True, True  # x.png and x.jpg in one folder: only the extension tells them apart
      elif not same_folder and depth[i] < len(parts[i]):
        depth[i], grown = depth[i] + 1, True
    if not grown:  # e.g. /a_b/x.png and /a/b/x.png: every name of one is a name of the other
      a, b = (paths[i] for i in clashing[:2])
      raise InputError(f'images {a} and {b} would both be named {names[clashing[0]]!r}: rename one of them')


def existing(paths: Sequence[str | None]) -> list[str]:
  """The output paths (local or gs://) that already exist, in order; `None` entries (no output) are passed over.
  Call it before writing, then `note_replaced` with the result after."""
  return [os.fspath(p) for p in paths if p is not None and storage.path(p).exists()]


def note_replaced(paths: Sequence[str]) -> None:
  """One line on stderr, `prog: note: replaced N earlier output(s): a, b, ...` (at most 5 named), when a run
  wrote over outputs of an earlier one; nothing when `paths` is empty."""
  if not paths:
    return
  from overfeat_jax import cli  # pylint: disable=g-import-not-at-top  (cli imports absl's flags)
  shown = ', '.join(paths[:5]) + (f' and {len(paths) - 5} more' if len(paths) > 5 else '')
  cli.print_error(f'replaced {len(paths)} earlier output{"s" if len(paths) > 1 else ""}: {shown}', 'note')
