"""The package as a built wheel, installed in a fresh venv, run from outside the repository: the default config
(named by module path, `config_files.DEFAULT_CONFIG`) is found and loads; `python -m overfeat_jax.main` gets
past the config to its first check. Offline: `pip wheel --no-build-isolation`, and the fresh venv reuses this
environment's packages through a path file (not its `.pth` files, so this checkout's editable install stays
out)."""

import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, cwd, timeout=300):
  env = {'PATH': '/usr/bin:/bin', 'JAX_PLATFORMS': 'cpu', 'HOME': str(cwd)}
  return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
  """(python of a fresh venv with only the built wheel installed, its site-packages, a directory outside)."""
  tmp = tmp_path_factory.mktemp('wheel')
  src = tmp / 'src'
  shutil.copytree(os.path.join(REPO, 'overfeat_jax'), src / 'overfeat_jax', symlinks=False,
                  ignore=shutil.ignore_patterns('__pycache__'))
  for name in ('pyproject.toml', 'README.md'):
    shutil.copy(os.path.join(REPO, name), src / name)
  out = _run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '--no-index', '-q',
              '-w', str(tmp / 'dist'), str(src)], tmp)
  assert out.returncode == 0, out.stderr[-3000:]
  (wheel,) = (tmp / 'dist').glob('overfeat_jax-*.whl')
  venv = tmp / 'venv'
  assert _run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], tmp).returncode == 0
  python = venv / 'bin' / 'python'
  site = _run([str(python), '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'], tmp).stdout.strip()
  with open(os.path.join(site, 'reuse_test_env.pth'), 'w', encoding='utf-8') as f:
    f.write(sysconfig.get_paths()['purelib'] + '\n')  # a plain path: its .pth files (the editable install) stay off
  out = _run([sys.executable, '-m', 'pip', 'install', '--no-deps', '--no-index', '-q', '--target', site,
              str(wheel)], tmp)
  assert out.returncode == 0, out.stderr[-3000:]
  outside = tmp / 'elsewhere'
  outside.mkdir()
  return python, site, outside


@pytest.mark.slow
def test_installed_wheel_has_the_default_config_by_module_path(installed):
  python, site, outside = installed
  code = ('from overfeat_jax import config_files as c; p = c.module_file(c.DEFAULT_CONFIG); '
          "print(p); print(c.load_file(p, 'default').get_config('smoke').stages)")
  out = _run([str(python), '-c', code], outside)
  assert out.returncode == 0, out.stderr[-3000:]
  path, stages = out.stdout.strip().splitlines()[-2:]
  assert path == os.path.join(site, 'overfeat_jax', 'configs', 'embedded.py')
  assert stages == "('classification', 'localization', 'detection')"


@pytest.mark.slow
def test_installed_main_resolves_the_default_config(installed):
  python, _, outside = installed
  blocker = outside / 'file'
  blocker.write_text('not a directory')
  # The default config loads at flag definition; a bad workdir is the first thing main checks after that.
  out = _run([str(python), '-m', 'overfeat_jax.main', f'--workdir={blocker}/run'], outside)
  assert out.returncode == 2, out.stderr[-3000:]
  assert 'Traceback' not in out.stderr and str(blocker) in out.stderr.strip().splitlines()[-1]
