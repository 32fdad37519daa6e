"""A `gs://` workdir for real, against a GCS emulator the test starts on loopback (`gcp-storage-emulator`).

The smoke config trains into `gs://bkt/run` (classification only), is SIGKILLed while an asynchronous checkpoint
is being written to the bucket, and the same command resumes it from the newest committed checkpoint and
finishes; then `export` writes an artifact to `gs://bkt/artifact` (read back from the bucket) and `predict`
reads the run's config and checkpoint from the bucket and draws into `gs://bkt/drawn`.

What the test reads, it reads from the emulator's JSON API (not through the project's code), so it sees what
really landed in the bucket; and no local folder named `gs:` may appear anywhere (the failure this replaces).
"""

import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.faults import harness

pytest.importorskip('gcsfs')
pytest.importorskip('gcp_storage_emulator')

BUCKET, STEPS, EVERY = 'bkt', 8, 2
RUN = f'gs://{BUCKET}/run'
CKPT_PREFIX = 'run/classification/checkpoints/'
COMMIT = 'commit_success.txt'  # orbax on an object store: a step is complete once this object exists

EMULATOR = Path(__file__).with_name('gcs_emulator.py')  # adds the header tensorstore needs


class Emulator:
  """`gcp-storage-emulator` (gcs_emulator.py) on a free loopback port, in memory, with one bucket."""

  def __init__(self, log_path: Path):
    with socket.socket() as s:
      s.bind(('127.0.0.1', 0))
      self.port = s.getsockname()[1]
    self.url = f'http://127.0.0.1:{self.port}'
    self._log = open(log_path, 'wb')  # pylint: disable=consider-using-with
    self.proc = subprocess.Popen([sys.executable, str(EMULATOR), 'start', '--host=127.0.0.1', f'--port={self.port}', '--in-memory',
                                  f'--default-bucket={BUCKET}'], stdout=self._log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
      try:
        self.objects()
        break
      except OSError:
        if time.monotonic() > deadline or self.proc.poll() is not None:
          raise
        time.sleep(0.1)

  def env(self) -> dict[str, str]:
    """What every client needs to talk to the emulator instead of Google (docs/launch.md)."""
    return {'STORAGE_EMULATOR_HOST': self.url, 'TENSORSTORE_GCS_HTTP_URL': self.url,
            'GOOGLE_AUTH_TOKEN_FOR_TESTING': 'emulator', 'GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT': 'false'}

  def objects(self, prefix: str = '') -> list[str]:
    """Names of the bucket's objects under `prefix` (the JSON API, every page)."""
    names, token = [], None
    while True:
      query = {'prefix': prefix, **({'pageToken': token} if token else {})}
      with urllib.request.urlopen(f'{self.url}/storage/v1/b/{BUCKET}/o?{urllib.parse.urlencode(query)}',
                                  timeout=10) as r:
        page = json.load(r)
      names += [item['name'] for item in page.get('items', [])]
      token = page.get('nextPageToken')
      if not token:
        return names

  def read(self, name: str) -> bytes:
    quoted = urllib.parse.quote(name, safe='')
    with urllib.request.urlopen(f'{self.url}/storage/v1/b/{BUCKET}/o/{quoted}?alt=media', timeout=10) as r:
      return r.read()

  def close(self) -> None:
    self.proc.kill()
    self.proc.wait()
    self._log.close()


@pytest.fixture
def emulator(tmp_path):
  emu = Emulator(tmp_path / 'emulator.log')
  yield emu
  emu.close()


def _steps(emulator: Emulator) -> tuple[list[int], list[int]]:
  """(committed steps, steps being written) of the run's checkpoints in the bucket."""
  started, committed = set(), set()
  for name in emulator.objects(CKPT_PREFIX):
    step, _, rest = name[len(CKPT_PREFIX):].partition('/')
    if step.isdigit():
      started.add(int(step))
      if rest == COMMIT:
        committed.add(int(step))
  return sorted(committed), sorted(started - committed)


def _cli(module: str, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, '-m', module, *args], cwd=harness.REPO, env=env, capture_output=True,
                        text=True, timeout=300)


def _no_local_gs_folder(*roots: Path) -> None:
  for root in roots:
    assert not (root / 'gs:').exists(), f'a local folder {root / "gs:"} was created'


@pytest.mark.slow
@pytest.mark.multiprocess
def test_gs_workdir_survives_sigkill_during_async_save_then_exports_and_predicts(tmp_path, data_dir, env,
                                                                                 emulator):
  env = {**env, **emulator.env()}
  flags = harness.trainer_flags(RUN, data_dir, STEPS, EVERY)

  # 1. Train into the bucket; SIGKILL once a save is in flight after at least one committed checkpoint.
  run = harness.Trainer(flags, env, tmp_path / 'log0.txt')
  moment = {}

  def save_in_flight() -> bool:
    committed, writing = _steps(emulator)
    if committed and writing and writing[-1] > committed[-1]:
      moment.update(committed=committed[-1], writing=writing[-1])
      return True
    return False

  # The log first (a local file), then the bucket at 20 Hz: a save to the emulator takes about 2 s, and a tighter
  # loop of HTTP listings would starve the trainer on a small machine.
  run.wait_for(f'step {EVERY}', lambda: run.last_step() >= EVERY, timeout=600, poll=0.05)
  run.wait_for('an asynchronous save in flight in the bucket', save_in_flight, poll=0.05)
  run.kill()
  committed, writing = _steps(emulator)
  assert committed[-1] == moment['committed'], (committed, writing, moment)
  assert moment['writing'] in writing, 'the save finished before the kill landed: the moment was missed'

  # 2. The same command resumes from the newest committed checkpoint (the half-written one is never used).
  run = harness.Trainer(flags, env, tmp_path / 'log1.txt')
  assert run.wait() == 0, run.tail()
  assert harness.resumed_from(run.text()) == moment['committed'], run.tail()
  committed, writing = _steps(emulator)
  assert committed[-1] == STEPS and not writing, (committed, writing)
  names = emulator.objects('run/')
  assert {'run/config.json', 'run/metrics.json'} <= set(names)
  assert json.loads(emulator.read('run/metrics.json'))['classification']['final_step'] == STEPS
  assert any(n.startswith('run/classification/events.out.tfevents') for n in names), names
  # tensorstore wrote the arrays through the emulator: OCDBT data files of the final step are objects there.
  assert any(n.startswith(f'{CKPT_PREFIX}{STEPS}/state/') and '/d/' in n for n in names), names

  # 3. Export to the bucket, and read the artifact back from it.
  result = _cli('overfeat_jax.export', [f'--workdir={RUN}', '--stage=classification',
                                        f'--output=gs://{BUCKET}/artifact'], env)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f'step {STEPS}' in result.stdout
  assert sorted(emulator.objects('artifact/')) == ['artifact/config.json', 'artifact/params.safetensors']
  check = ('import sys, overfeat_jax; model, params = overfeat_jax.load_pretrained(sys.argv[1]); '
           'print("loaded", type(model).__name__)')
  result = subprocess.run([sys.executable, '-c', check, f'gs://{BUCKET}/artifact'], cwd=harness.REPO, env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0 and 'loaded OverFeat' in result.stdout, result.stderr[-3000:]

  # 4. Predict from the gs:// workdir (its config.json and checkpoint), drawing into the bucket.
  image = tmp_path / 'scene.png'
  Image.fromarray(np.random.default_rng(0).integers(0, 256, (72, 96, 3), dtype=np.uint8)).save(image)
  result = _cli('overfeat_jax.predict', [f'--workdir={RUN}', '--task=classification', '--json',
                                         f'--draw=gs://{BUCKET}/drawn', str(image)], env)
  assert result.returncode == 0, result.stderr[-3000:]
  record = json.loads(result.stdout.splitlines()[0])
  assert len(record['predictions']) == 5 and record['width'] == 96
  drawn = emulator.objects('drawn/')
  assert len(drawn) == 1 and drawn[0].endswith('.png'), drawn
  assert emulator.read(drawn[0]).startswith(b'\x89PNG')
  _no_local_gs_folder(harness.REPO, tmp_path, Path.cwd())


_STORAGE_CHECKS = '''
import sys
from overfeat_jax import storage
from overfeat_jax.errors import InputError
root = storage.path('gs://bkt/s')
storage.write_json_atomic(root / 'metrics.json', {'a': 1})
assert (root / 'metrics.json').read_text() == '{\\n  "a": 1\\n}'
seen = []  # (file uploaded, whether config.json existed at that moment)
upload = storage.upload
def watched(src, dst):
  seen.append((str(dst).rsplit('/', 1)[1], (root / 'art' / 'config.json').exists()))
  upload(src, dst)
storage.upload = watched
for version in (b'1', b'2'):
  with storage.atomic_dir('gs://bkt/s/art', commit_file='config.json') as stage:
    (stage / 'params.bin').write_bytes(version)
    (stage / 'config.json').write_bytes(version)
assert seen == [('params.bin', False), ('config.json', False)] * 2, seen
mirror = storage.Mirror('gs://bkt/s/logs')
(storage.path(mirror.local) / 'events').write_bytes(b'x' * 10)
mirror.sync()
(storage.path(mirror.local) / 'events').write_bytes(b'x' * 20)
mirror.close()
assert (root / 'logs' / 'events').read_bytes() == b'x' * 20
with storage.staged_file('gs://bkt/s/release.bin') as local:  # what export --format=release writes through
  open(local, 'wb').write(b'weights')
assert (root / 'release.bin').read_bytes() == b'weights'
storage.check_writable('gs://bkt/s/run')
try:
  storage.check_writable('gs://no-such-bucket/run')
except InputError as e:
  print('refused:', e)
print('storage ok')
'''


@pytest.mark.multiprocess
def test_storage_on_the_emulator(emulator, env):
  """The object-store side of overfeat_jax.storage: one-object writes, an artifact's config.json absent while
  its params upload (both times, also when replacing), TensorBoard's mirror uploading the grown file, a file
  staged locally and uploaded (the release-format export), and a missing bucket refused in one line."""
  result = subprocess.run([sys.executable, '-c', _STORAGE_CHECKS], cwd=harness.REPO, env={**env, **emulator.env()},
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "refused: workdir 'gs://no-such-bucket/run' is not writable" in result.stdout, result.stdout
  assert 'storage ok' in result.stdout
  assert sorted(emulator.objects('s/')) == ['s/art/config.json', 's/art/params.bin', 's/logs/events',
                                            's/metrics.json', 's/release.bin']
  assert emulator.read('s/art/params.bin') == b'2'
