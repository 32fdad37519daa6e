"""A user's training run in the field: Ctrl-C saves and exits 130, a second run into a busy workdir refuses,
a changed config on resume is named and the old config.json kept, the first compile is announced and timed."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from overfeat_jax import config_files, storage
from overfeat_jax.errors import InputError
from overfeat_jax.train import loop
from tests.train.helpers import REPO, load_config
from tests.entry_points import import_entry_point


def _sigint_as_in_a_terminal() -> None:
  """A child's SIGINT back to Python's default: an xdist worker ignores SIGINT, and children inherit that."""
  signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def sigint_default():
  """SIGINT raises KeyboardInterrupt here, as in a terminal (an xdist worker ignores it); restored after."""
  before = signal.signal(signal.SIGINT, signal.default_int_handler)
  yield
  signal.signal(signal.SIGINT, before)


def test_first_ctrl_c_in_the_loop_asks_for_a_save_and_the_second_interrupts(sigint_default):
  del sigint_default
  previous = signal.getsignal(signal.SIGINT)
  with loop.Preemption(mesh=None) as preemption:
    signal.raise_signal(signal.SIGINT)  # no KeyboardInterrupt: the loop saves at the next step
    assert preemption.requested and preemption.signal_name == 'SIGINT' and preemption.agreed()
    with pytest.raises(KeyboardInterrupt):
      signal.raise_signal(signal.SIGINT)
  assert signal.getsignal(signal.SIGINT) is previous


def test_sigterm_in_the_loop_is_named_sigterm():
  with loop.Preemption(mesh=None) as preemption:
    signal.raise_signal(signal.SIGTERM)
    signal.raise_signal(signal.SIGTERM)  # repeated SIGTERMs still mean one save
  assert preemption.requested and preemption.signal_name == 'SIGTERM'
  assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def _main_until_first_log_line(workdir, data_dir):
  """`main` started on the smoke config into an empty data_dir (so it first builds the dataset); returns the
  process once it has written its first log line."""
  env = {'JAX_PLATFORMS': 'cpu', 'PATH': '/usr/bin:/bin', 'PYTHONUNBUFFERED': '1'}
  proc = subprocess.Popen(
      [sys.executable, '-m', 'overfeat_jax.main', '--config=experiments/configs/embedded.py:smoke',
       f'--workdir={workdir}', f'--config.data.data_dir={data_dir}'], cwd=REPO, env=env,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_sigint_as_in_a_terminal)
  first = proc.stderr.readline()
  assert first, 'main ended without a line'
  return proc, first


def test_ctrl_c_outside_the_loop_is_one_line_and_exit_130(tmp_path):
  proc, first = _main_until_first_log_line(tmp_path / 'run', tmp_path / 'tfds')
  proc.send_signal(signal.SIGINT)
  try:
    _, err = proc.communicate(timeout=600)
  except subprocess.TimeoutExpired:
    proc.kill()
    raise
  err = first + err
  assert proc.returncode == 130, err[-2000:]
  assert 'Traceback' not in err and 'KeyboardInterrupt' not in err, err[-2000:]
  assert 'main.py: interrupted: (Ctrl-C) nothing saved' in err.strip().splitlines()[-1]


def test_interrupted_line_names_the_saved_step_only_for_ctrl_c():
  main = import_entry_point('main')
  ctrl_c = {'classification': {'preempted': True, 'saved_at': 70, 'signal': 'SIGINT'}}
  assert main.interrupted(ctrl_c) == 'saved classification step 70; rerun the same command to resume'
  assert main.interrupted({'classification': {'preempted': True, 'saved_at': 70, 'signal': 'SIGTERM'}}) is None
  assert main.interrupted({'classification': {'preempted': False, 'saved_at': 400}}) is None


def test_a_second_run_into_a_locked_workdir_refuses_in_one_line(tmp_path):
  with storage.workdir_lock(tmp_path):
    with pytest.raises(InputError) as e:
      with storage.workdir_lock(tmp_path):
        pass
    message = str(e.value)
    assert f'workdir {tmp_path} is in use by process {os.getpid()} on host ' in message and '\n' not in message
    with pytest.raises(InputError, match='is in use by process'):  # the trainer takes it before any work
      loop.train_and_evaluate(load_config('embedded', 'smoke'), str(tmp_path))
  assert (tmp_path / storage.LOCK_FILE).read_text() == ''  # released and emptied on exit
  with storage.workdir_lock(tmp_path):  # and free again
    pass


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_warning(tmp_path, caplog):
  dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True,
                        text=True, check=True)
  (tmp_path / storage.LOCK_FILE).write_text(f'{dead.stdout.strip()} otherhost 2026-01-01T00:00:00Z\n')
  with caplog.at_level('WARNING'):
    with storage.workdir_lock(tmp_path):
      holder = (tmp_path / storage.LOCK_FILE).read_text().split()
  assert holder[0] == str(os.getpid())
  assert any('stale lock' in r.getMessage() and dead.stdout.strip() in r.getMessage() for r in caplog.records)


def test_a_remote_workdir_takes_no_lock():
  with storage.workdir_lock('gs://bucket/run'):  # nothing is opened: no lock object, documented
    pass


def _smoke(**overrides):
  config = load_config('embedded', 'smoke')
  config.update(overrides)
  return config


def test_config_changes_name_each_field_old_and_new():
  old = json.loads(json.dumps(_smoke().to_dict()))  # as read back from config.json: tuples become lists
  assert loop.config_changes(old, _smoke().to_dict()) == []
  changed = _smoke(num_train_steps=100)
  changed.schedule.base_lr = 0.5
  before = _smoke()
  assert loop.config_changes(old, changed.to_dict()) == [
      f'num_train_steps: {before.num_train_steps!r} -> 100',
      f'schedule.base_lr: {before.schedule.base_lr!r} -> 0.5']


def test_resume_with_a_changed_config_warns_and_keeps_the_previous_file(tmp_path, caplog):
  workdir = str(tmp_path)
  config_files.save_config(_smoke(), workdir)
  first = (tmp_path / 'config.json').read_text()
  changed = _smoke(num_train_steps=100)
  with caplog.at_level('WARNING'):
    loop.warn_config_changes(changed, workdir)
  assert any('num_train_steps' in r.getMessage() and '-> 100' in r.getMessage() for r in caplog.records)
  loop.save_config_keeping_previous(changed, workdir)
  kept = list(tmp_path.glob('config.*.json'))
  assert len(kept) == 1 and kept[0].read_text() == first
  assert json.loads((tmp_path / 'config.json').read_text())['num_train_steps'] == 100
  loop.save_config_keeping_previous(changed, workdir)  # the same config again: nothing more kept
  assert len(list(tmp_path.glob('config.*.json'))) == 1


def test_an_unreadable_previous_config_is_kept_not_fatal(tmp_path):
  (tmp_path / 'config.json').write_text('{not json')
  loop.warn_config_changes(_smoke(), str(tmp_path))
  loop.save_config_keeping_previous(_smoke(), str(tmp_path))
  assert [p.read_text() for p in tmp_path.glob('config.*.json')] == ['{not json']
  assert json.loads((tmp_path / 'config.json').read_text())['stages'] == list(_smoke().stages)


def test_a_previous_config_without_read_permission_is_refused_not_replaced(tmp_path, monkeypatch):
  """As a user (not root), a config.json without read permission: the run stops with one line instead of
  replacing the only record of how the earlier steps were trained (was a raw PermissionError)."""
  (tmp_path / 'config.json').write_text('{"stages": ["classification"]}')
  path_type, read_bytes = type(storage.path(tmp_path)), type(storage.path(tmp_path)).read_bytes

  def denied(self):
    if self.name == 'config.json':
      raise PermissionError(13, 'Permission denied', str(self))
    return read_bytes(self)
  monkeypatch.setattr(path_type, 'read_bytes', denied)
  changes = loop.warn_config_changes(_smoke(), str(tmp_path))
  assert changes == [f'the previous config.json is unreadable (cannot read the training config '
                     f'{tmp_path / "config.json"}: Permission denied.)']
  with pytest.raises(InputError, match=r'^cannot keep the previous config .*config\.json \(Permission denied\): '
                                       r'make it readable or move it away$'):
    loop.save_config_keeping_previous(_smoke(), str(tmp_path), changes)
  monkeypatch.undo()
  assert (tmp_path / 'config.json').read_text() == '{"stages": ["classification"]}'


def test_a_checkpoint_write_error_names_the_os_reason_even_after_a_long_path():
  """tensorstore puts the OS error after the file's path; with a long workdir the 300-character cut used to drop
  it (a full-disk CI run printed no 'No space left on device'). The code's reason now comes first."""
  class Manager:
    directory = '/w/classification/checkpoints'
  message = ('RESOURCE_EXHAUSTED: Error writing local file "' + '/deep' * 80 + '/_sharding": Failed to write 14091 '
             "bytes to file 9: No space left on device [os_error_code='28']")
  with pytest.raises(loop.CheckpointWriteError) as raised:
    with loop.checkpoint_writes(Manager()):
      raise ValueError(message)
  text = str(raised.value)
  assert text.startswith('writing a checkpoint under /w/classification/checkpoints failed (No space left on '
                         'device; ValueError: RESOURCE_EXHAUSTED') and text.endswith('are intact')


class _Lines:
  def __init__(self):
    self.lines = []

  def info(self, msg, *args):
    self.lines.append(msg % args)


def test_the_first_step_is_announced_as_a_compile_and_timed():
  writer = _Lines()
  with loop.compile_timer(writer, 'classification', first=True):
    time.sleep(0.05)
  assert writer.lines[0] == 'Compiling the classification train step ...'
  assert writer.lines[1].startswith('Compiled the classification train step in ')
  assert float(writer.lines[1].split(' in ')[1].split()[0]) >= 0.05
  with loop.compile_timer(writer, 'classification', first=False):
    pass
  assert len(writer.lines) == 2


@pytest.mark.slow
def test_ctrl_c_in_the_loop_saves_exits_130_and_a_changed_rerun_resumes_and_keeps_the_config(tmp_path):
  args = ['--config=experiments/configs/embedded.py:smoke', f'--workdir={tmp_path / "run"}',
          f'--config.data.data_dir={tmp_path / "tfds"}', "--config.stages=('classification',)",
          '--config.checkpoint_every_steps=1000', '--config.eval.every_steps=0']
  env = {'JAX_PLATFORMS': 'cpu', 'PATH': '/usr/bin:/bin', 'PYTHONUNBUFFERED': '1'}
  proc = subprocess.Popen([sys.executable, '-m', 'overfeat_jax.main', *args, '--config.num_train_steps=400'],
                          cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          preexec_fn=_sigint_as_in_a_terminal)
  seen = []
  for line in proc.stderr:  # the compile is announced, then timed: Ctrl-C once training runs
    seen.append(line)
    if 'Compiled the classification train step in ' in line:
      proc.send_signal(signal.SIGINT)
      break
  try:
    _, err = proc.communicate(timeout=300)
  except subprocess.TimeoutExpired:
    proc.kill()
    raise
  err = ''.join(seen) + err
  assert any('Compiling the classification train step ...' in line for line in seen), err[-2000:]
  assert proc.returncode == 130 and 'Traceback' not in err, err[-3000:]
  last = err.strip().splitlines()[-1]
  assert 'main.py: interrupted: saved classification step ' in last and 'rerun the same command' in last, last
  saved = int(last.split('step ')[1].split(';')[0])
  assert (tmp_path / 'run' / 'classification' / 'checkpoints' / str(saved)).is_dir()
  rerun = subprocess.run([sys.executable, '-m', 'overfeat_jax.main', *args,
                          f'--config.num_train_steps={saved + 2}'], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=600)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert f'Resumed classification from step {saved}' in rerun.stderr
  assert f'num_train_steps: 400 -> {saved + 2}' in rerun.stderr
  kept = list((tmp_path / 'run').glob('config.*.json'))
  assert len(kept) == 1 and json.loads(kept[0].read_text())['num_train_steps'] == 400


def test_the_eta_leaves_out_the_first_steps_compile(monkeypatch):
  """Field case: just after a (resumed) run started, the ETA counted the first step's compile as a step's time
  (a 60 s compile and 1 s steps: 44 minutes for 88 steps left). The loop starts the clock once it compiled."""
  from overfeat_jax.train import logging as train_logging  # pylint: disable=g-import-not-at-top
  now = [0.0]
  monkeypatch.setattr(train_logging.time, 'perf_counter', lambda: now[0])
  progress = train_logging.Progress(total_steps=100, batch_size=8, first_step=10)  # resumed at step 10
  now[0] = 60.0  # step 11 compiled (60 s) and ran
  line, rate = progress.line(11)
  assert rate == pytest.approx(8 / 60)  # the first step's own line counts its compile
  progress.start_clock(11)
  now[0] = 62.0  # steps 12 and 13, 1 s each
  line, rate = progress.line(13)
  assert rate == pytest.approx(8.0) and line.endswith('ETA 1m27s'), line  # 87 steps left at 1 s
