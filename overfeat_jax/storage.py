"""Workdir and output paths, local or remote (`gs://bucket/run`): the one home for opening, writing and creating
them. Every file the project writes under a workdir or an output folder goes through here or through
`etils.epath` directly; orbax and tensorstore are handed `url(path)`, the URL unchanged.

Remote paths need the filesystem package of their scheme (`pip install gcsfs` for `gs://`, which etils.epath
uses through fsspec when TensorFlow is absent). A GCS emulator is reached through the usual variables
(`STORAGE_EMULATOR_HOST`, `TENSORSTORE_GCS_HTTP_URL`, `GOOGLE_AUTH_TOKEN_FOR_TESTING`; docs/launch.md).

Why a reader never sees half a file:
  * local disk: the bytes go to a temporary file in the same directory, then `os.replace` renames it over the
    target (a rename within one filesystem is atomic);
  * object stores (gs://, s3://): a file is one object upload. An object becomes visible only when its upload
    completes, whole, and replaces the previous generation in one step. No rename is used: on GCS a rename is
    a copy plus a delete (not atomic, and gcsfs first tries the `moveTo` call, which emulators lack).
A directory (`atomic_dir`) is staged locally and published either by one local rename or, remotely, by
uploading its files with the commit file (the one a reader opens first, e.g. an artifact's config.json) last
and deleted first, so a reader finds either no commit file or one whose companions are complete.
"""

import contextlib
import datetime
import fcntl
import json
import os
import pathlib
import shutil
import socket
import tempfile
from typing import Any, Iterator

from absl import logging
from etils import epath

from overfeat_jax.errors import InputError

_COPY_BLOCK = 1 << 20  # bytes per read when copying a file into an object


def is_remote(path: str | os.PathLike) -> bool:
  """Whether `path` is a URL of a remote store (`gs://...`, `s3://...`) rather than a local path."""
  text = os.fspath(path)
  return '://' in text and not text.startswith('file://')


def path(p: str | os.PathLike) -> epath.Path:
  """`p` as a path object: a URL as an `etils.epath.Path` (unchanged), a local path as an absolute
  `pathlib.Path` (the same interface; no filesystem backend to pick, so reading a local artifact never probes
  for TensorFlow or fsspec)."""
  text = os.fspath(p)
  if is_remote(text):
    return epath.Path(text)
  return pathlib.Path(os.path.abspath(text.removeprefix('file://')))


def url(p: str | os.PathLike) -> str:
  """What orbax/tensorstore and log lines get: the absolute local path, or the URL unchanged."""
  return os.fspath(path(p))


def makedirs(p: str | os.PathLike) -> epath.Path:
  """Creates a local directory and its parents; a no-op on object stores, which have no directories (and
  whose bucket must already exist: a misspelled bucket is reported by the first write, not created)."""
  target = path(p)
  if not is_remote(p):
    target.mkdir(parents=True, exist_ok=True)
  return target


def check_writable(p: str | os.PathLike) -> None:
  """Creates `p` and proves it writable by writing and deleting a probe file, so that a bad workdir (read-only,
  a missing bucket, no credentials) fails in one line before any work.

  Raises:
    InputError: naming the path and the reason.
  """
  probe = path(p) / f'.write_probe-{socket.gethostname()}-{os.getpid()}'
  step = 'cannot create it'
  try:
    makedirs(p)
    step = 'cannot write a file in it'
    probe.write_bytes(b'')
    probe.unlink()
  except Exception as e:  # pylint: disable=broad-except  (OSError locally; fsspec/gcsfs raise their own types)
    raise InputError(f'workdir {os.fspath(p)!r} is not writable: {step} ({reason(e)})') from None


def reason(e: BaseException) -> str:
  """The OS's words for an error ('No such file or directory'), else `Type: message` (fsspec's own errors)."""
  return getattr(e, 'strerror', None) or f'{type(e).__name__}: {str(e)[:200]}'


@contextlib.contextmanager
def _naming(p: str | os.PathLike) -> Iterator[None]:
  """Turns an OSError of writing the output `p` (its folder missing or read-only, a full disk) into one
  InputError naming `p`, not a temporary sibling (`.x.tmp-abc`) the user never chose."""
  try:
    yield
  except OSError as e:
    raise InputError(f'cannot write {os.fspath(p)}: {reason(e)}') from None


def new_file_mode() -> int:
  """The permissions `open()` gives a new file under this process's umask (0o644 under the usual 022).

  `tempfile.mkstemp` creates 0600 files, so a temporary renamed into place would make every output private to
  its owner (teammates on a shared cluster could not read metrics, drawings or weights); the atomic writers
  chmod their temporary file to this first. The umask is read from /proc (Linux) where it can be, without
  changing it, since `os.umask` sets it process-wide, briefly, for every thread.
  """
  try:
    with open('/proc/self/status', encoding='ascii') as f:
      umask = next(int(line.split()[1], 8) for line in f if line.startswith('Umask:'))
  except (OSError, StopIteration, ValueError, IndexError):
    umask = os.umask(0o022)
    os.umask(umask)
  return 0o666 & ~umask


def write_atomic(p: str | os.PathLike, data: bytes | str) -> None:
  """Writes `data` (str as UTF-8) to `p` so that a reader sees the old content or the new, never a part.

  Local: a temporary file in the same directory, renamed over `p`. Remote: one object upload.

  Raises:
    InputError: `p` cannot be written locally (its folder is missing or read-only, the disk is full), naming `p`.
  """
  data = data.encode('utf-8') if isinstance(data, str) else data
  target = path(p)
  if is_remote(p):
    target.write_bytes(data)
    return
  with _naming(p):
    fd, tmp = tempfile.mkstemp(dir=os.fspath(target.parent), prefix=f'.{target.name}.tmp-')
    try:
      with os.fdopen(fd, 'wb') as f:
        f.write(data)
      os.chmod(tmp, new_file_mode())  # mkstemp's 0600 would make the file private
      os.replace(tmp, os.fspath(target))
    except BaseException:
      with contextlib.suppress(OSError):
        os.unlink(tmp)
      raise


def check_output(p: str | os.PathLike) -> None:
  """Proves, before any slow work, that `write_atomic(p, ...)` will be able to write `p`: its local folder exists
  and takes a file (a probe file created and deleted beside it). Remote paths are not probed (their first write
  reports a bad bucket or missing credentials).

  Raises:
    InputError: naming `p` and the reason (as `write_atomic` would after the work).
  """
  if is_remote(p):
    return
  with _naming(p):
    fd, probe = tempfile.mkstemp(dir=os.fspath(path(p).parent), prefix=f'.{path(p).name}.probe-')
    os.close(fd)
    os.unlink(probe)


def write_json_atomic(p: str | os.PathLike, data: Any) -> None:
  """`data` as indented, key-sorted JSON, written with `write_atomic`."""
  write_atomic(p, json.dumps(data, indent=2, sort_keys=True))


def upload(local_file: str | os.PathLike, p: str | os.PathLike) -> None:
  """Copies a local file to `p` (remote: one object upload, streamed; local: `write_atomic` semantics)."""
  if not is_remote(p):
    write_atomic(p, pathlib.Path(local_file).read_bytes())
    return
  with open(local_file, 'rb') as src, path(p).open('wb') as dst:
    shutil.copyfileobj(src, dst, _COPY_BLOCK)


@contextlib.contextmanager
def staged_file(p: str | os.PathLike) -> Iterator[str]:
  """A local file path through which to write `p` with a writer that needs one (it keeps its own local
  atomicity): `p` itself when local; for a URL a local temporary file, uploaded as one object on a clean exit."""
  if not is_remote(p):
    with _naming(p):  # the writer's OSError (a missing folder): one InputError naming `p`
      yield os.fspath(path(p))
    return
  stage = tempfile.mkdtemp(prefix='overfeat_stage-')
  try:
    local = os.path.join(stage, path(p).name)
    yield local
    upload(local, p)
  finally:
    shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(p: str | os.PathLike, commit_file: str) -> Iterator[epath.Path]:
  """Yields an empty local staging directory; on a clean exit its files replace the directory `p` at once.

  Local: the staging directory is a sibling of `p`, renamed into place (an existing `p` is moved aside first
  and deleted after). Remote: `p/commit_file` is deleted, every other staged file uploaded, `commit_file`
  uploaded last. On an exception nothing is published and the staging directory is removed.
  """
  target, remote = path(p), is_remote(p)
  with _naming(p):
    if not remote:
      makedirs(target.parent)
    stage = tempfile.mkdtemp(prefix=f'.{target.name}.tmp-', dir=None if remote else os.fspath(target.parent))
  try:
    yield pathlib.Path(stage)
    with _naming(p):
      if remote:
        _publish_remote(stage, target, commit_file)
      else:
        _publish_local(stage, target)
  finally:
    shutil.rmtree(stage, ignore_errors=True)


def _publish_local(stage: str, target: epath.Path) -> None:
  os.chmod(stage, 0o755)
  old = None
  if os.path.lexists(target):
    old = tempfile.mkdtemp(prefix=f'.{target.name}.old-', dir=os.fspath(target.parent))
    os.replace(os.fspath(target), os.path.join(old, 'a'))
  os.replace(stage, os.fspath(target))
  if old:
    shutil.rmtree(old, ignore_errors=True)


def _publish_remote(stage: str, target: epath.Path, commit_file: str) -> None:
  names = sorted(os.listdir(stage))
  if commit_file not in names:
    raise ValueError(f'the staged directory has no {commit_file}')
  if (target / commit_file).exists():
    (target / commit_file).unlink()
  for name in [n for n in names if n != commit_file] + [commit_file]:
    upload(os.path.join(stage, name), target / name)


class Mirror:
  """A local directory whose files `sync()` copies to `target` (TensorBoard events: tensorboardX appends to
  ordinary files, an object store takes whole objects). For a local `target` it is `target` itself.

  Each sync uploads every file that grew since the last one, as one object: a reader sees a complete prefix
  of the events file.
  """

  def __init__(self, target: str | os.PathLike):
    self.target, self.remote = path(target), is_remote(target)
    self.local = tempfile.mkdtemp(prefix='overfeat_mirror-') if self.remote else os.fspath(makedirs(target))
    self._sizes: dict[str, int] = {}

  def sync(self) -> None:
    if not self.remote:
      return
    for root, _, files in os.walk(self.local):
      for name in files:
        file = os.path.join(root, name)
        size = os.path.getsize(file)
        if self._sizes.get(file) != size:
          upload(file, self.target / os.path.relpath(file, self.local))
          self._sizes[file] = size

  def close(self) -> None:
    """Final sync; removes the local staging copy."""
    self.sync()
    if self.remote:
      shutil.rmtree(self.local, ignore_errors=True)


LOCK_FILE = 'run.lock'  # in a local workdir while a training run uses it (`workdir_lock`)


@contextlib.contextmanager
def workdir_lock(workdir: str | os.PathLike) -> Iterator[None]:
  """Holds `workdir/run.lock` while a training run uses a local `workdir`, so a second run into it refuses.

  The lock is an `fcntl.flock` on the file, which the kernel releases when the holding process ends however it
  ends (a kill, a crash): a lock is never left behind by a process that is gone. The file names the holder
  (`pid host since`, one line); on a clean exit it is emptied, so a non-empty file found unlocked is a stale
  one (its process died): it is taken over with a warning. A remote workdir (gs://) takes no lock (object
  stores have no lock the kernel releases; docs/training.md).

  Raises:
    InputError: another live process holds the lock (one line naming its pid, host and start time).
  """
  if is_remote(workdir):
    yield
    return
  lock_path = os.path.join(os.fspath(workdir), LOCK_FILE)
  fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 4096, 0).decode('utf-8', 'replace').split()
      pid, host, since = (holder + ['?', '?', '?'])[:3]
      raise InputError(f'workdir {workdir} is in use by process {pid} on host {host} since {since}; wait for it '
                       'to finish or stop it (Ctrl-C saves and stops it), or use another --workdir') from None
    previous = os.pread(fd, 4096, 0).decode('utf-8', 'replace').split()
    if previous:
      pid, host, left = (previous + ['?', '?', '?'])[:3]
      logging.warning('taking over the stale lock %s of process %s on host %s since %s (that process is gone)',
                      lock_path, pid, host, left)
    since = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')
    os.ftruncate(fd, 0)
    os.pwrite(fd, f'{os.getpid()} {socket.gethostname()} {since}\n'.encode(), 0)
    try:
      yield
    finally:
      os.ftruncate(fd, 0)  # emptied, not deleted: a run waiting on this very file never locks a deleted one
  finally:
    os.close(fd)  # releases the flock
