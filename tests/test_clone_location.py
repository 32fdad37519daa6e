"""The suite passes wherever the clone lives: here, the location-sensitive tests run from a copy of the working
tree under a 0700 directory whose path contains a space, from another current directory (docs/guarantees.md)."""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
# Tests that once depended on where the clone is: dropping to `nobody` (root only), relative config paths, the
# current directory, a path with a space in a command line, a `.venv` inside the clone (launch scripts).
LOCATION_SENSITIVE = (
    'tests/bad_input/test_entry_points.py::test_main_workdir_without_permission',
    'tests/bad_input/test_entry_points.py::test_main_bad_config_values[config_arg]',
    'tests/test_output_names.py',
    'tests/launch/test_scripts.py::test_local_script_runs_two_processes',
)


def _tree_files() -> list[str]:
  """The working tree's files as a clone would have them (tracked and new, not ignored)."""
  out = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], cwd=REPO,
                       capture_output=True, check=True).stdout
  return [f for f in out.decode().split('\0') if f and ((REPO / f).is_file() or (REPO / f).is_symlink())]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which('git') is None or not (REPO / '.git').exists(), reason='needs a git checkout')
def test_location_sensitive_tests_pass_from_a_private_directory_with_a_space(tmp_path):
  private = tmp_path / 'private dir'
  private.mkdir(mode=0o700)
  clone = private / 'over feat'
  for name in _tree_files():
    (clone / name).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / name, clone / name, follow_symlinks=False)  # a link (overfeat_jax/configs) stays a link
  elsewhere = tmp_path / 'elsewhere'
  elsewhere.mkdir()
  env = {k: v for k, v in os.environ.items() if not k.startswith('PYTEST_')}
  env['PYTHONPATH'] = str(clone)  # the copy's package, not the one the environment has installed
  done = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '--rootdir', str(clone),
                         *(str(clone / t) for t in LOCATION_SENSITIVE)], cwd=elsewhere, env=env,
                        capture_output=True, text=True, timeout=900, check=False)
  assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
  summary = done.stdout.strip().splitlines()[-1]
  assert ' passed' in summary and (os.geteuid() != 0 or 'skipped' not in summary), done.stdout[-2000:]
