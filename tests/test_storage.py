"""overfeat_jax.storage on local disk: atomic writes leave no partial or temporary files, `atomic_dir` replaces
a directory at once and publishes nothing on failure, `check_writable` fails in one line. The gs:// side runs
against an emulator in tests/faults/test_gcs_workdir.py."""

import json
import os
import pathlib

import pytest

from overfeat_jax import storage
from overfeat_jax.errors import InputError


def test_remote_urls_are_kept_and_local_paths_made_absolute(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert storage.url('gs://bkt/run/x') == 'gs://bkt/run/x'
  assert storage.is_remote('gs://bkt') and storage.is_remote('s3://b/k')
  assert not storage.is_remote('run/x') and not storage.is_remote('file:///tmp/x')
  assert storage.url('run/x') == str(tmp_path / 'run' / 'x')
  assert storage.url('file:///tmp/x') == '/tmp/x'


def test_write_atomic_replaces_whole_and_leaves_no_temporary_file(tmp_path):
  target = tmp_path / 'metrics.json'
  storage.write_json_atomic(target, {'b': 1, 'a': [1, 2]})
  storage.write_json_atomic(target, {'c': 3})
  assert json.loads(target.read_text()) == {'c': 3}
  storage.write_atomic(tmp_path / 'table.md', 'ü\n')
  assert (tmp_path / 'table.md').read_bytes() == 'ü\n'.encode()
  assert sorted(os.listdir(tmp_path)) == ['metrics.json', 'table.md']


@pytest.mark.parametrize('umask', [0o022, 0o027, 0o077])
def test_written_files_get_the_umask_permissions_not_mkstemps_private_ones(tmp_path, umask):
  """Outputs (metrics, drawings, features, config.json) were 0600 whatever the umask: teammates on a shared
  cluster could not read them (field case). The umask is restored afterwards."""
  old = os.umask(umask)
  try:
    assert storage.new_file_mode() == 0o666 & ~umask
    storage.write_atomic(tmp_path / 'a.json', '{}')
    storage.write_json_atomic(tmp_path / 'b.json', {'x': 1})
  finally:
    os.umask(old)
  for name in ('a.json', 'b.json'):
    assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_write_atomic_failure_keeps_the_old_file(tmp_path, monkeypatch):
  target = tmp_path / 'config.json'
  storage.write_json_atomic(target, {'old': True})
  with pytest.raises(TypeError):
    storage.write_json_atomic(target, {'not json': object()})

  def interrupted(src, dst):  # the bytes are written, the process dies before the rename
    raise KeyboardInterrupt

  monkeypatch.setattr(os, 'replace', interrupted)
  with pytest.raises(KeyboardInterrupt):
    storage.write_json_atomic(target, {'new': True})
  monkeypatch.undo()
  assert json.loads(target.read_text()) == {'old': True}
  assert os.listdir(tmp_path) == ['config.json']  # the temporary file was removed


def test_atomic_dir_replaces_the_directory_and_publishes_nothing_on_failure(tmp_path):
  target = tmp_path / 'out' / 'artifact'
  for version in ('1', '2'):
    with storage.atomic_dir(target, commit_file='config.json') as stage:
      (stage / 'params.bin').write_text(version)
      (stage / 'config.json').write_text(version)
  assert sorted(os.listdir(target)) == ['config.json', 'params.bin']
  assert (target / 'params.bin').read_text() == '2'
  with pytest.raises(RuntimeError):
    with storage.atomic_dir(target, commit_file='config.json') as stage:
      (stage / 'params.bin').write_text('3')
      raise RuntimeError('export failed half way')
  assert (target / 'params.bin').read_text() == '2'
  assert os.listdir(tmp_path / 'out') == ['artifact']  # no staging or old copies left behind


def test_check_writable_is_one_input_error(tmp_path):
  storage.check_writable(tmp_path / 'new' / 'run')
  assert os.listdir(tmp_path / 'new' / 'run') == []  # the probe file is gone
  (tmp_path / 'file').write_text('x')
  with pytest.raises(InputError, match=r"'.*/file/run' is not writable: cannot create it \(Not a directory\)"):
    storage.check_writable(tmp_path / 'file' / 'run')


@pytest.mark.parametrize('where', ['file/out', 'missing/out', '/proc/overfeat_out'])
def test_a_path_that_cannot_be_written_is_one_input_error_naming_it(tmp_path, where):
  """The user's path and the OS's reason, never the temporary sibling (`.out.tmp-abc`) that failed first."""
  (tmp_path / 'file').write_text('x')
  target = os.path.join(tmp_path, where)
  def staged():  # a writer of its own (the release weight file), writing a temporary sibling first
    with storage.staged_file(target) as local:
      pathlib.Path(local + '.tmp').write_bytes(b'x')

  writes = [lambda: storage.write_atomic(target, 'x'), staged, lambda: storage.check_output(target)]
  if not where.startswith('missing'):  # atomic_dir creates missing parent folders
    writes.append(lambda: storage.atomic_dir(target, commit_file='c').__enter__())
  for write in writes:
    with pytest.raises(InputError) as raised:
      write()
    assert str(raised.value).startswith(f'cannot write {target}: ') and '.tmp-' not in str(raised.value)
  assert os.listdir(tmp_path) == ['file']


def test_check_output_leaves_nothing_and_creates_no_folder(tmp_path):
  storage.check_output(tmp_path / 'f.npy')
  assert os.listdir(tmp_path) == []  # the probe is gone and the output not yet made
  storage.check_output('gs://some-bucket/f.npy')  # remote: left to the first write (no network here)


def test_local_mirror_is_the_folder_itself(tmp_path):
  mirror = storage.Mirror(tmp_path / 'logs')
  assert mirror.local == str(tmp_path / 'logs') and os.path.isdir(mirror.local)
  (tmp_path / 'logs' / 'events').write_bytes(b'x')
  mirror.close()
  assert (tmp_path / 'logs' / 'events').read_bytes() == b'x'
