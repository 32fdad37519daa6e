"""`launch.tpu_pod`: validation, rendered gcloud commands, the pre-flight gate (fake gcloud, pre-flight)."""

import json
import os
import pathlib
import shlex
import stat
import subprocess
import sys
import tarfile

import pytest

from launch import tpu_pod
from overfeat_jax.errors import InputError

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
POD = tpu_pod.Pod('of-v5e-32', 'us-west4-a', 'proj', 'gcloud')
FAKE_GCLOUD_PY = """
import json, os, shutil, sys
with open(os.environ['FAKE_GCLOUD_LOG'], 'a') as f:
  f.write(json.dumps(sys.argv[1:]) + '\\n')
if sys.argv[4] == 'scp':  # keep what would reach the pod: the launcher deletes its tarball afterwards
  shutil.copy(sys.argv[5], os.environ['FAKE_SHIPPED'])
sys.exit(1 if sys.argv[4] == 'describe' and os.environ.get('FAKE_TPU_EXISTS') != '1' else 0)
"""


@pytest.mark.parametrize('accel, topology', [
    ('v5litepod-32', 'v5e:4x8'), ('v4-32', 'v4:2x2x4'), ('v5p-16', 'v5p:2x2x2'), ('v6e-8', 'v6e:2x4'),
    (None, 'v5e:2x2')])
def test_matching_accelerator_and_topology(accel, topology):
  tpu_pod.chips(accel, topology)


@pytest.mark.parametrize('accel, topology, match', [
    ('v5litepod-32', 'v5e:4x4', 'does not match'), ('v4-32', 'v4:2x2x2x2', 'not like'),
    ('v4-32', 'v5e:4x4', 'does not match'), ('v5e-32', 'v5e:4x8', None), ('tpu', 'v5e:4x8', 'not like'),
])
def test_mismatched_accelerator_and_topology(accel, topology, match):
  if match is None:  # an unknown family is not checked (new hardware must not be blocked)
    tpu_pod.chips(accel, topology)
    return
  with pytest.raises(InputError, match=match):
    tpu_pod.chips(accel, topology)


@pytest.mark.parametrize('pod, create, accel, version, match', [
    (tpu_pod.Pod('Of_1', 'us-west4-a'), False, None, None, 'tpu_name'),
    (tpu_pod.Pod('of', 'uswest4'), False, None, None, 'zone'),
    (tpu_pod.Pod('of', 'us-west4-a'), True, 'v5litepod-8', None, 'runtime_version'),
])
def test_bad_pod_flags(pod, create, accel, version, match):
  with pytest.raises(InputError, match=match):
    tpu_pod.check_pod(pod, create, accel, version)


def test_parse_install():
  assert tpu_pod.parse_install('git+https://github.com/o/r.git@v1.2') == ('https://github.com/o/r.git',
                                                                         'v1.2')
  assert tpu_pod.parse_install('git+ssh://git@github.com/o/r.git@abc123') == ('ssh://git@github.com/o/r.git',
                                                                              'abc123')
  for bad in ['https://github.com/o/r.git@v1', 'git+ssh://git@github.com/o/r.git', 'git+@v1']:
    with pytest.raises(InputError, match='git\\+URL@REV'):
      tpu_pod.parse_install(bad)


def test_remote_config_is_relative_to_the_shipped_tree(tmp_path):
  (tmp_path / 'experiments').mkdir()
  remote = tpu_pod.remote_config(f'{tmp_path}/experiments/c.py:smoke', str(tmp_path))
  assert remote == 'experiments/c.py:smoke'
  assert tpu_pod.remote_config('experiments/c.py', None) == 'experiments/c.py'
  with pytest.raises(InputError, match='inside the code'):
    tpu_pod.remote_config('/etc/c.py', str(tmp_path))


def test_rendered_commands():
  [(pack, local_only), (scp, _), (unpack, _)] = tpu_pod.code_commands(POD, '/src', None, 'of', 'tpu')
  assert not local_only and pack[:2] == ['tar', '-czf'] and pack[-3:] == ['-C', '/src', '.']
  assert '--exclude=.venv' in pack and '--exclude=.git' in pack
  assert scp == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'scp', pack[2], 'of-v5e-32:overfeat_code.tar.gz',
                 '--worker=all', '--zone=us-west4-a', '--project=proj']
  assert unpack == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh', 'of-v5e-32', '--worker=all',
                    '--command=rm -rf of && mkdir -p of && tar -xzf overfeat_code.tar.gz -C of && '
                    "python3 -m pip install -q -e 'of[tpu]'", '--zone=us-west4-a', '--project=proj']
  [(clone, _)] = tpu_pod.code_commands(POD, None, 'git+https://h/r.git@abc', 'of', 'tpu')
  assert clone[-3] == ("--command=rm -rf of && git clone -q https://h/r.git of && "
                       "git -C of checkout -q abc && python3 -m pip install -q -e 'of[tpu]'")
  train = tpu_pod.train_command(POD, 'of', 'experiments/c.py', 'gs://b/r', ['--config.x=1'])
  assert train == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh', 'of-v5e-32', '--worker=all',
                   '--command=cd of && OVERFEAT_CLUSTER=tpu PYTHONUNBUFFERED=1 python3 -m overfeat_jax.main '
                   '--config=experiments/c.py --workdir=gs://b/r --config.x=1', '--zone=us-west4-a',
                   '--project=proj']


def _run(tmp_path, *args, preflight_exit=0, tpu_exists=False):
  gcloud, script = tmp_path / 'gcloud', tmp_path / 'fake_gcloud.py'
  script.write_text(FAKE_GCLOUD_PY)
  # A shell wrapper, not a `#!python` line: a shebang cannot name an interpreter whose path has a space.
  gcloud.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(script))} "$@"\n')
  gcloud.chmod(gcloud.stat().st_mode | stat.S_IXUSR)
  env = {**os.environ, 'FAKE_GCLOUD_LOG': str(tmp_path / 'gcloud.log'), 'TMPDIR': str(tmp_path),
         'FAKE_SHIPPED': str(tmp_path / 'shipped.tar.gz'),
         'FAKE_PREFLIGHT_LOG': str(tmp_path / 'preflight.log'), 'FAKE_PREFLIGHT_EXIT': str(preflight_exit),
         'FAKE_TPU_EXISTS': '1' if tpu_exists else '0', 'PYTHONPATH': str(REPO_ROOT)}
  flags = ['--tpu_name=of-test', '--zone=us-west4-a', '--accelerator_type=v5litepod-32', '--topology=v5e:4x8',
           '--runtime_version=v2-alpha-tpuv5-lite', '--config=tests/launch/conftest.py', '--workdir=gs://b/r',
           f'--gcloud={gcloud}', '--preflight_module=tests.launch._fake_preflight', *args]
  res = subprocess.run([sys.executable, '-m', 'launch.tpu_pod', *flags], cwd=REPO_ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
  read = lambda name: [json.loads(line) for line in (tmp_path / name).read_text().splitlines()] if (
      tmp_path / name).exists() else []
  return res, read('gcloud.log'), read('preflight.log')


def test_dry_run_runs_the_preflight_and_prints_everything_else(tmp_path):
  res, gcloud_calls, preflight_calls = _run(tmp_path, f'--code_dir={REPO_ROOT}', '--create', '--dry_run',
                                            '--config.train.lr=0.1', '--chip_config=megacore')
  assert res.returncode == 0, res.stderr
  assert preflight_calls == [['--config=tests/launch/conftest.py', '--topology=v5e:4x8',
                              '--chip_config=megacore', '--config.train.lr=0.1']]
  assert gcloud_calls == []  # no gcloud command ran
  out = res.stdout
  assert out.index('tests.launch._fake_preflight') < out.index('pre-flight passed') < out.index('# dry run')
  for verb in ('describe', 'create', 'scp', 'ssh'):
    assert f'$ {tmp_path}/gcloud compute tpus tpu-vm {verb} ' in out, verb
  assert '--workdir=gs://b/r --config.train.lr=0.1' in out.splitlines()[-1]
  assert not list(tmp_path.glob('*.tar.gz')) and not list(tmp_path.glob('overfeat_pod_*'))  # nothing written


def test_failing_preflight_aborts_before_the_pod_is_touched(tmp_path):
  for n_runs, extra in enumerate(([], ['--dry_run']), start=1):
    res, gcloud_calls, preflight_calls = _run(tmp_path, f'--code_dir={REPO_ROOT}', '--create', *extra,
                                              preflight_exit=1)
    assert res.returncode == 2 and gcloud_calls == [] and len(preflight_calls) == n_runs
    assert res.stderr.strip().endswith(
        'pre-flight failed (exit code 1) for v5e:4x8: nothing was started on the pod')
    assert 'describe' not in res.stdout


def test_real_run_creates_copies_installs_and_trains(tmp_path):
  code = tmp_path / 'code'
  (code / 'experiments').mkdir(parents=True)
  (code / 'experiments' / 'c.py').write_text('x = 1\n')
  (code / '.venv').mkdir()
  (code / '.venv' / 'big').write_text('never shipped')
  res, calls, _ = _run(tmp_path, f'--code_dir={code}', f'--config={code}/experiments/c.py', '--create')
  assert res.returncode == 0, res.stderr
  assert [c[3] for c in calls] == ['describe', 'create', 'scp', 'ssh', 'ssh']
  assert calls[1][5:7] == ['--accelerator-type=v5litepod-32', '--version=v2-alpha-tpuv5-lite']
  assert calls[-1][6] == ('--command=cd overfeat_jax && OVERFEAT_CLUSTER=tpu PYTHONUNBUFFERED=1 python3 -m '
                          'overfeat_jax.main --config=experiments/c.py --workdir=gs://b/r')
  with tarfile.open(tmp_path / 'shipped.tar.gz') as tar:
    names = tar.getnames()
  assert './experiments/c.py' in names and not any('.venv' in n for n in names)
  assert not list(tmp_path.glob('overfeat_pod_*'))  # the private staging folder is removed


def test_a_git_checkout_ships_its_code_not_its_ignored_outputs(tmp_path):
  """The tarball shipped the demo's workdir/, built datasets and 584 MB release weight files to every worker
  (only .venv, .git and caches were excluded: field case); a git checkout now ships what git calls code."""
  code = tmp_path / 'code'
  (code / 'experiments').mkdir(parents=True)
  (code / 'experiments' / 'c.py').write_text('x = 1\n')
  (code / 'new_module.py').write_text('y = 2\n')  # untracked, not ignored: the user's work in progress
  (code / 'workdir' / 'classification').mkdir(parents=True)
  (code / 'workdir' / 'classification' / 'ckpt').write_text('big')
  (code / 'net_weight_0').write_text('weights')
  (code / 'notes.txt').write_text('excluded by --exclude')
  (code / '.gitignore').write_text('/workdir/\nnet_weight_*\n')
  git = lambda *a: subprocess.run(['git', '-C', str(code), *a], check=True, capture_output=True)
  git('init', '-q')
  git('add', '.gitignore', 'experiments/c.py')
  res, calls, _ = _run(tmp_path, f'--code_dir={code}', f'--config={code}/experiments/c.py', '--create',
                       '--exclude=*.txt')
  assert res.returncode == 0, res.stderr
  assert 'shipping 3 files of the git checkout' in res.stdout
  with tarfile.open(tmp_path / 'shipped.tar.gz') as tar:
    assert sorted(tar.getnames()) == ['.gitignore', 'experiments/c.py', 'new_module.py']
  assert [c[3] for c in calls] == ['describe', 'create', 'scp', 'ssh', 'ssh']


def test_existing_pod_is_reused_and_missing_pod_without_create_stops(tmp_path):
  res, calls, _ = _run(tmp_path, '--install=git+https://h/r.git@abc', '--skip_preflight', tpu_exists=True)
  assert res.returncode == 0, res.stderr
  assert [c[3] for c in calls] == ['describe', 'ssh', 'ssh'] and 'reusing TPU VM of-test' in res.stdout
  res, calls, _ = _run(tmp_path, '--install=git+https://h/r.git@abc', '--skip_preflight')
  assert res.returncode == 2 and 'TPU VM of-test not found in us-west4-a; pass --create' in res.stderr


@pytest.mark.parametrize('args, match', [
    (['--code_dir=.', '--install=git+https://h/r@1'], 'exactly one of'),
    ([], 'exactly one of'),
    (['--code_dir=/nonexistent'], 'not a directory'),
    (['--code_dir=.', '--remote_dir=../x'], 'remote_dir'),
    (['--code_dir=.', '--topology=v5e:4x4'], 'does not match'),
    (['--code_dir=.', '--config=nope.py'], 'does not exist'),
    (['--code_dir=.', '--workdir='], 'workdir'),
    (['--code_dir=.', '--config.x'], 'FIELD=VALUE'),
    (['--code_dir=.', '--tpu_name=BAD'], 'tpu_name'),
])
def test_bad_flags_are_one_line_errors(tmp_path, args, match):
  res, calls, preflight_calls = _run(tmp_path, *args)
  assert res.returncode == 2 and match in res.stderr and res.stderr.strip().count('\n') == 0, res.stderr
  assert calls == [] and preflight_calls == []
