"""The hand-written per-hardware scripts: short, strict, fail fast on missing variables, and really run."""

import os
import pathlib
import subprocess
import sys

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPTS = REPO_ROOT / 'launch' / 'scripts'
REQUIRED = {'tpu_v5e_32.sh': ['TPU_NAME', 'ZONE', 'PROJECT', 'BUCKET'],
            'slurm_gpu.sh': ['PARTITION', 'NODES', 'WORKDIR'], 'local_2proc.sh': ['CONFIG', 'WORKDIR']}


def _run(name, env_vars, *args, timeout=60):
  env = {k: v for k, v in os.environ.items() if k not in sum(REQUIRED.values(), [])}
  # This interpreter's environment and this checkout, wherever either lives (not a .venv inside the clone).
  env.update(PATH=f'{pathlib.Path(sys.executable).parent}:{os.environ["PATH"]}', PYTHONPATH=str(REPO_ROOT),
             **env_vars)
  return subprocess.run(['bash', str(SCRIPTS / name), *args], env=env, capture_output=True, text=True,
                        timeout=timeout, cwd='/')


@pytest.mark.parametrize('name', sorted(REQUIRED))
def test_script_is_short_and_strict(name):
  text = (SCRIPTS / name).read_text()
  assert len(text.splitlines()) < 30 and 'set -euo pipefail' in text
  assert subprocess.run(['bash', '-n', str(SCRIPTS / name)]).returncode == 0


@pytest.mark.parametrize('name', sorted(REQUIRED))
def test_missing_variable_fails_fast(name):
  for missing in REQUIRED[name]:
    env_vars = {v: 'x' for v in REQUIRED[name] if v != missing}
    res = _run(name, env_vars)
    assert res.returncode != 0 and f'{missing}: set {missing}' in res.stderr, res.stderr


def test_tpu_script_dry_run(tmp_path):
  res = _run('tpu_v5e_32.sh', {'TPU_NAME': 'of-v5e', 'ZONE': 'us-west4-a', 'PROJECT': 'p', 'BUCKET': 'gs://b',
                               'CONFIG': 'tests/launch/conftest.py'}, '--dry_run', '--skip_preflight')
  assert res.returncode == 0, res.stderr
  assert '--accelerator-type=v5litepod-32' in res.stdout and '--workdir=gs://b/fast_v5e32' in res.stdout


def test_slurm_script_dry_run():
  res = _run('slurm_gpu.sh', {'PARTITION': 'gpu', 'NODES': '4', 'WORKDIR': '/shared/w',
                              'CONFIG': 'tests/launch/conftest.py'}, '--dry_run', '--config.a=1')
  assert res.returncode == 0, res.stderr
  assert '#SBATCH --nodes=4' in res.stdout and res.stdout.splitlines()[-1].endswith('--config.a=1')


@pytest.mark.multiprocess
def test_local_script_runs_two_processes(tmp_path):
  res = _run('local_2proc.sh', {'CONFIG': 'unused.py', 'WORKDIR': str(tmp_path),
                                'MODULE': 'tests.launch._allreduce_worker'}, timeout=120)
  assert res.returncode == 0, res.stdout + res.stderr
  assert '[p1] allreduce ok: process 1 of 2, 4 devices, sum 36 == 36' in res.stdout
