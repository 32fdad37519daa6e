"""Nothing read from disk executes code: no unpickling or eval anywhere in the package, weight files are
size-checked before a byte is read, and `--config.FIELD=VALUE` values are parsed as literals.

The config FILE itself is Python by design of ml_collections (`--config=path.py` runs its `get_config()`): it
is code the user writes, like any script they run; configs load their shared `common.py` by path with
importlib (`experiments/configs/*.py`), which is the only `exec_module` and is allowed below.
"""

import re
import time
from pathlib import Path

import pytest

from overfeat_jax.errors import InputError
from overfeat_jax.models import geometry, release_weights

REPO = Path(__file__).resolve().parents[2]
CODE_DIRS = ('overfeat_jax', 'launch', 'experiments')
# What could execute code from a file: unpickling (directly or through numpy/torch/joblib), eval/exec,
# marshal, shelve, yaml's full loader.
FORBIDDEN = re.compile(r'\bpickle\b|allow_pickle\s*=\s*True|(?<![.\w])eval\(|(?<![.\w])exec\(|\bmarshal\b|'
                       r'\bshelve\b|\bdill\b|\bjoblib\b|(?<![.\w])torch\.load\(|yaml\.load\(|yaml\.unsafe_load|'
                       r'cloudpickle|literal_eval')
# Configs load each other (overfeat_jax.config_files), benchmarks the repository's own config files, and a sweep the training config
# file it names, by path: config files are Python by design (like `--config=path.py`), never data.
ALLOWED_EXEC_MODULE = re.compile(r'^(experiments/(configs|benchmarks)/\w+\.py|overfeat_jax/(sweeps/runner|config_files)\.py)$')


def _code_lines():
  for top in CODE_DIRS:
    for path in sorted((REPO / top).rglob('*.py')):
      for number, line in enumerate(path.read_text().splitlines(), 1):
        code = line.split('#', 1)[0]
        if code.strip():
          yield path.relative_to(REPO).as_posix(), number, code


def _strip_strings(code: str) -> str:
  """The line without string literals (docstrings that *mention* pickle are fine)."""
  return re.sub(r"'[^']*'|\"[^\"]*\"", "''", code)


def test_no_unpickling_eval_or_exec_in_the_package():
  hits = [f'{p}:{n}: {c.strip()}' for p, n, c in _code_lines() if FORBIDDEN.search(_strip_strings(c))]
  assert not hits, 'code that can execute what it reads:\n' + '\n'.join(hits)


def test_exec_module_only_where_the_repositorys_config_files_are_loaded():
  users = {p for p, _, c in _code_lines() if 'exec_module' in _strip_strings(c)}
  assert users and all(ALLOWED_EXEC_MODULE.search(p) for p in users), users


def test_every_np_load_refuses_pickles():
  calls = [(p, n, c) for p, n, c in _code_lines() if re.search(r'(?<![.\w])(np|numpy)\.load\(', c)]
  for p, n, c in calls:
    assert 'allow_pickle=False' in c, f'{p}:{n}: np.load without allow_pickle=False'


def test_a_10gb_sparse_weight_file_is_rejected_without_reading(tmp_path):
  path = tmp_path / 'net_weight_0'
  with open(path, 'wb') as f:
    f.truncate(10 * 2**30)  # a hole: 10 GiB long, no blocks on disk
  fast = geometry.get_geometry('fast', 1)
  t0 = time.perf_counter()
  with pytest.raises(InputError, match='10,737,418,240 bytes'):
    release_weights.load_release_weights(path, fast)
  assert time.perf_counter() - t0 < 0.5  # reading 10 GiB of zeros would take many seconds


def test_a_weight_file_one_float_short_is_rejected_before_reading(tmp_path):
  fast = geometry.get_geometry('fast', 1)
  path = tmp_path / 'short'
  with open(path, 'wb') as f:
    f.truncate(release_weights.expected_bytes(fast) - 4)
  with pytest.raises(InputError, match='bytes but'):
    release_weights.load_release_weights(path, fast)


def test_config_override_values_are_literals_not_code(tmp_path):
  """`--config.FIELD=<python expression>` is parsed as a literal: an expression that would create a file if
  evaluated is refused (or kept as a string), and the file never appears."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  marker = tmp_path / 'evaluated'
  payload = f"__import__('pathlib').Path({str(marker)!r}).touch()"
  values = flags.FlagValues()
  handle = config_flags.DEFINE_config_file('config', str(REPO / 'experiments/configs/embedded.py'),
                                           flag_values=values, lock_config=True)
  for field in ('data.name', 'eval.scales', 'batch_size'):
    try:
      values(['prog', f'--config={REPO / "experiments/configs/embedded.py"}', f'--config.{field}={payload}'])
    except Exception:  # pylint: disable=broad-except  (refused: fine, as long as nothing ran)
      pass
    else:
      assert handle.value.data.name in ('embedded_cls_loc', payload)
    values.unparse_flags()
  assert not marker.exists()
