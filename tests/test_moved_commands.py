"""The data commands moved to the package top (docs/ARCHITECTURE.md); their old `python -m` names say where,
with exit status 2, instead of running nothing and exiting 0 as if they had built or written anything."""

import subprocess
import sys

import pytest

from tests.bad_input.cli_runner import REPO

MOVED = [('overfeat_jax.data.build', 'overfeat_jax.build_dataset'),
         ('overfeat_jax.data.embedded', 'overfeat_jax.show_embedded'),
         ('overfeat_jax.data.write_folders', 'overfeat_jax.write_folders')]


@pytest.mark.parametrize('old,new', MOVED, ids=[m[0] for m in MOVED])
def test_old_command_name_points_to_the_new_one(tmp_path, old, new):
  done = subprocess.run([sys.executable, '-m', old, '--dataset=voc_folder', f'--manual_dir={tmp_path}'],
                        cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
  assert done.returncode == 2, done
  assert done.stderr.strip().splitlines() == [f'{old} is a library now: run python -m {new} (same flags)']
  assert not list(tmp_path.iterdir())
