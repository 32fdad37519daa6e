"""Every entry point, fed the bad-input corpus: exit 2 with ONE line on stderr, or a correct result; never a
traceback. Each case is a real `python -m ...` process."""

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from tests.bad_input import cli_runner
from tests.bad_input.cli_runner import assert_ok, assert_one_line_error, run_cli
from tests.bad_input.corpus import CONFIGS, IMAGES, WEIGHTS

pytestmark = pytest.mark.multiprocess

# A small random network: the CLI path is the same as with release weights, at a fraction of the cost.
SMALL_NET = ('--model=small', '--width_divisor=8', '--num_classes=10', '--top=2')


@pytest.mark.parametrize('case', IMAGES, ids=lambda c: c.name)
def test_classify_image(corpus, case):
  done = run_cli('overfeat_jax.classify', *SMALL_NET, corpus[case.name])
  if case.valid:
    assert_ok(done)
    assert len([line for line in done.stdout.splitlines() if line.strip()]) >= 2, done.stdout
  else:
    assert_one_line_error(done, case.name)


@pytest.mark.parametrize('case', WEIGHTS, ids=lambda c: c.name)
def test_classify_weights(corpus, case):
  t0 = time.monotonic()
  done = run_cli('overfeat_jax.classify', f'--weights={corpus[case.name]}', corpus['cmyk.JPEG'])
  assert_one_line_error(done, case.name)
  assert time.monotonic() - t0 < 120  # the 10 GB sparse file is never read (see test_no_code_loading)


CONFIG = cli_runner.REPO / 'experiments' / 'configs' / 'embedded.py'


def _smoke(workdir, data_dir, *extra):
  return (f'--config={CONFIG}:smoke', f'--workdir={workdir}',
          f'--config.data.data_dir={data_dir}', *extra)


@pytest.mark.parametrize('case', CONFIGS, ids=lambda c: c.name)
@pytest.mark.parametrize('module', ['overfeat_jax.main', 'overfeat_jax.preflight'])
def test_config_file(corpus, tmp_path, module, case):
  extra = ('--topology=v5e:2x2',) if module.endswith('preflight') else (f'--workdir={tmp_path}',)
  done = run_cli(module, f'--config={corpus[case.name]}', *extra)
  assert_one_line_error(done, case.name)


BAD_VALUES = [
    ('negative_batch', ['--config.batch_size=-1'], 'batch_size'),
    ('zero_batch', ['--config.batch_size=0'], 'batch_size'),
    ('batch_not_int', ['--config.batch_size=abc'], 'batch_size'),
    ('batch_float', ['--config.batch_size=1.5'], 'batch_size'),
    ('unknown_field', ['--config.no_such_field=1'], 'no_such_field'),
    ('unknown_stage', ["--config.stages=('nope',)"], 'nope'),
    ('unknown_geometry', ['--config.model.geometry=nope'], 'nope'),
    ('zero_width_divisor', ['--config.model.width_divisor=0'], 'width_divisor'),  # ZeroDivisionError (field)
    ('negative_width_divisor', ['--config.model.width_divisor=-1'], 'width_divisor'),  # trained 1-wide layers
    ('unknown_optimizer', ['--config.optimizer.name=nope'], 'nope'),
    ('bad_tuple', ['--config.eval.scales=(72,'], 'scales'),
    ('bad_worker_count', ['--config.data.worker_count=many'], 'worker_count'),
    ('config_arg', [], 'bogus'),  # --config=embedded.py:bogus
    ('positional', ['stray_argument'], 'stray_argument'),
    ('unknown_flag', ['--no_such_flag=1'], 'no_such_flag'),
]


@pytest.mark.parametrize('name,extra,mentions', BAD_VALUES, ids=[v[0] for v in BAD_VALUES])
def test_main_bad_config_values(tmp_path, data_dir, name, extra, mentions):
  args = list(_smoke(tmp_path / 'w', data_dir, *extra))
  if name == 'config_arg':
    args[0] = f'--config={CONFIG}:bogus'
  done = run_cli('overfeat_jax.main', *args)
  assert_one_line_error(done, mentions)
  assert not (tmp_path / 'w' / 'classification' / 'checkpoints').exists() or name == 'zero_batch'


@pytest.mark.parametrize('name, mentions', [
    ('image_folder/never_built', 'image_folder/never_built is not built in'),
    ('ilsvrc2012_cls_loc', 'ilsvrc2012_cls_loc is not built in'),
])
def test_main_dataset_not_built_is_a_short_line_and_leaves_no_workdir(tmp_path, data_dir, name, mentions):
  """Field case: a dataset not built was one line of ~5,000 characters (tfds' whole catalogue) and left a
  workdir with an empty run.lock behind."""
  done = run_cli('overfeat_jax.main', *_smoke(tmp_path / 'w', data_dir, f'--config.data.name={name}'))
  line = assert_one_line_error(done, mentions, 'python -m overfeat_jax.build_dataset')
  assert len(line) < 300, line
  assert not (tmp_path / 'w').exists()


def test_main_workdir_under_a_file(tmp_path, data_dir):
  (tmp_path / 'a_file').write_text('x')
  done = run_cli('overfeat_jax.main', *_smoke(tmp_path / 'a_file' / 'w', data_dir))
  assert_one_line_error(done, 'a_file')


@pytest.fixture
def nobody_dir():
  """A directory nobody can enter and read, whatever the clone's or pytest's temporary directory allow (either may
  be under a 0700 directory): made with `mkdtemp` in the system's temporary directory, opened to 0755."""
  path = pathlib.Path(tempfile.mkdtemp(prefix='overfeat as nobody '))  # a space in the path, on purpose
  path.chmod(0o755)
  yield path
  shutil.rmtree(path)


@pytest.mark.skipif(os.geteuid() != 0, reason='needs root to drop to nobody (as a user, any read-only dir works)')
def test_main_workdir_without_permission(nobody_dir, data_dir):
  configs = nobody_dir / 'configs'  # the user's config files: readable by the user (nobody)
  shutil.copytree(cli_runner.REPO / 'experiments' / 'configs', configs)
  locked = nobody_dir / 'locked'
  locked.mkdir(mode=0o755)  # owned by root: nobody may look into it but not create anything in it
  script = cli_runner.REPO / 'tests' / 'bad_input' / 'as_nobody.py'
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=str(cli_runner.REPO))
  args = _smoke(locked / 'w', data_dir)
  args = (f'--config={configs / "embedded.py"}:smoke', *args[1:])
  done = subprocess.run([sys.executable, str(script), 'overfeat_jax.main', *args], cwd=nobody_dir, env=env,
                        capture_output=True, text=True, timeout=300, check=False)
  assert_one_line_error(done, 'not writable', str(locked / 'w'))


def test_export_output_under_a_file_and_missing_workdir(tmp_path):
  (tmp_path / 'a_file').write_text('x')
  done = run_cli('overfeat_jax.export', f'--workdir={tmp_path / "nowhere"}', f'--output={tmp_path / "out"}')
  assert_one_line_error(done, 'nowhere')


def test_predict_missing_workdir_and_image(tmp_path, corpus):
  done = run_cli('overfeat_jax.predict', f'--workdir={tmp_path / "nowhere"}', '--task=classification',
                 corpus['cmyk.JPEG'])
  assert_one_line_error(done, 'nowhere')


@pytest.mark.parametrize('what', ['file', 'empty_dir'])
def test_data_build_bad_manual_dir(tmp_path, what):
  manual = tmp_path / 'manual'
  if what == 'file':
    manual.write_text('not a directory')
  else:
    manual.mkdir()
  done = run_cli('overfeat_jax.build_dataset', '--dataset=ilsvrc2012_cls_loc', f'--manual_dir={manual}',
                 f'--data_dir={tmp_path / "out"}')
  assert_one_line_error(done, str(manual))


@pytest.mark.parametrize('args,mentions', [
    (['--num_processes=0', '--', '--workdir=/tmp/x'], 'process'),
    (['--timeout_s=-1', '--', '--workdir=/tmp/x'], 'timeout_s'),
], ids=['zero_processes', 'negative_timeout'])
def test_launch_local_bad_flags(args, mentions):
  assert_one_line_error(run_cli('launch.local', *args), mentions)
