r"""Trains on a Cloud TPU pod slice: pre-flight here, create/reuse the TPU VM, ship the code, run everywhere.

Order matters: the pre-flight (`python -m overfeat_jax.preflight`, an AOT compile for the target topology)
runs locally BEFORE anything touches the pod, and a failing pre-flight aborts the launch. Then:
describe (or create with `--create`) -> copy the working tree (`--code_dir`) or clone `--install=git+URL@REV`
-> `pip install -e` on every worker -> `gcloud ... ssh --worker=all` running the same trainer command on every
worker, whose logs stream here. On the workers `OVERFEAT_CLUSTER=tpu` makes `distributed.initialize` let jax
detect the pod. `--dry_run` runs the pre-flight (unless `--skip_preflight`) and prints every other command.

  python -m launch.tpu_pod --tpu_name=of-v5e-32 --zone=us-west4-a --project=my-proj \
      --accelerator_type=v5litepod-32 --topology=v5e:4x8 --runtime_version=v2-alpha-tpuv5-lite --create \
      --code_dir=. --config=experiments/configs/fast_imagenet.py --workdir=gs://my-bucket/fast \
      --config.batch_size=4096 --dry_run
"""

import dataclasses
import fnmatch
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from typing import Sequence

from absl import flags

from launch import common
from overfeat_jax.errors import InputError

FLAGS = flags.FLAGS

PREFLIGHT_MODULE = 'overfeat_jax.preflight'
TARBALL = 'overfeat_code.tar.gz'
EXCLUDES = ('.venv', '.git', '__pycache__', '*.egg-info', '.pytest_cache', '.hypothesis')
# Accelerator-type prefix -> topology family, and whether the type's number counts TensorCores (2 per chip).
_FAMILIES = {'v5litepod': ('v5e', False), 'v6e': ('v6e', False), 'v5p': ('v5p', True), 'v4': ('v4', True),
             'v3': ('v3', True), 'v2': ('v2', True)}
_NAME_RE = re.compile(r'^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$')
_ZONE_RE = re.compile(r'^[a-z]+-[a-z]+\d+-[a-z]$')
_ACCEL_RE = re.compile(r'^(v\d+[a-z]*)-(\d+)$')
_TOPOLOGY_RE = re.compile(r'^(v\d+[a-z]*):(\d+(?:x\d+){1,2})$')
_REMOTE_RE = re.compile(r'^[A-Za-z0-9_.][A-Za-z0-9_./-]*$')  # it is `rm -rf`-ed on the workers


def _define_flags() -> None:
  """Only the command line defines flags, so that tests can import several launchers."""
  flags.DEFINE_string('tpu_name', None, 'TPU VM name.')
  flags.DEFINE_string('zone', None, 'GCP zone, e.g. us-west4-a.')
  flags.DEFINE_string('project', None, 'GCP project; gcloud default if unset.')
  flags.DEFINE_string('accelerator_type', None, 'e.g. v5litepod-32 (for --create; checked vs --topology).')
  flags.DEFINE_string('topology', None, 'Pre-flight target, e.g. v5e:4x8.')
  flags.DEFINE_string('runtime_version', None, 'TPU software version for --create, e.g. v2-alpha-tpuv5-lite.')
  flags.DEFINE_bool('create', False, 'Create the TPU VM if it does not exist (else it must exist).')
  flags.DEFINE_string('code_dir', None, 'Working tree to copy to every worker.')
  flags.DEFINE_string('install', None, 'Instead of --code_dir: git+URL@REV to clone on every worker.')
  flags.DEFINE_string('extras', 'tpu', 'pip extras installed on the workers.')
  flags.DEFINE_string('remote_dir', 'overfeat_jax', 'Code directory on the workers (relative to home).')
  flags.DEFINE_multi_string('exclude', [], 'More paths (fnmatch patterns) left out of the copied tree; a git '
                            'checkout ships only its tracked and untracked-but-not-ignored files anyway.')
  flags.DEFINE_string('config', None, 'Experiment config file, [:ARG].')
  flags.DEFINE_string('workdir', None, 'Output directory every worker can reach (gs://...).')
  flags.DEFINE_string('chip_config', None, 'Pre-flight --chip_config (default|megacore).')
  flags.DEFINE_integer('num_slices', None, 'Pre-flight --num_slices (this launcher starts one slice).')
  flags.DEFINE_string('module', common.TRAINER_MODULE, 'Module the workers run.')
  flags.DEFINE_string('preflight_module', PREFLIGHT_MODULE, 'Module of the pre-flight check.')
  flags.DEFINE_bool('skip_preflight', False, 'Do not run the pre-flight (not recommended).')
  flags.DEFINE_bool('dry_run', False, 'Run the pre-flight, print the other commands, run none of them.')
  flags.DEFINE_string('gcloud', 'gcloud', 'The gcloud command.')


@dataclasses.dataclass(frozen=True)
class Pod:
  """Where to run: the gcloud coordinates of one TPU VM slice."""
  tpu_name: str
  zone: str
  project: str | None = None
  gcloud: str = 'gcloud'

  def command(self, verb: str, *args: str) -> list[str]:
    project = [f'--project={self.project}'] if self.project else []
    return [self.gcloud, 'compute', 'tpus', 'tpu-vm', verb, *args, f'--zone={self.zone}', *project]

  def ssh_all(self, remote: str) -> list[str]:
    return self.command('ssh', self.tpu_name, '--worker=all', f'--command={remote}')


def chips(accelerator_type: str | None, topology: str | None) -> None:
  """Checks names, and that the accelerator type and the pre-flight topology describe the same slice."""
  accel = _ACCEL_RE.match(accelerator_type or '')
  topo = _TOPOLOGY_RE.match(topology or '')
  if accelerator_type is not None and not accel:
    raise InputError(f'--accelerator_type={accelerator_type!r} is not like v5litepod-32 or v4-16')
  if topology is not None and not topo:
    raise InputError(f'--topology={topology!r} is not like v5e:4x8 or v4:2x2x2')
  if not (accel and topo) or accel.group(1) not in _FAMILIES:
    return
  family, counts_cores = _FAMILIES[accel.group(1)]
  n_chips = int(accel.group(2)) // (2 if counts_cores else 1)
  topo_chips = math.prod(int(d) for d in topo.group(2).split('x'))
  if family != topo.group(1) or n_chips != topo_chips:
    raise InputError(f'--accelerator_type={accelerator_type} ({n_chips} {family} chips) does not match '
                     f'--topology={topology} ({topo_chips} {topo.group(1)} chips)')


def check_pod(pod: Pod, create: bool, accelerator_type: str | None, runtime_version: str | None) -> None:
  if not pod.tpu_name or not _NAME_RE.match(pod.tpu_name):
    raise InputError(f'--tpu_name={pod.tpu_name!r}: lower-case letters, digits and -, starting with a letter')
  if not pod.zone or not _ZONE_RE.match(pod.zone):
    raise InputError(f'--zone={pod.zone!r} is not a GCP zone like us-west4-a')
  if create and not (accelerator_type and runtime_version):
    raise InputError('--create needs --accelerator_type and --runtime_version')


def preflight_command(module: str, config: str, topology: str, overrides: Sequence[str],
                      chip_config: str | None = None, num_slices: int | None = None) -> list[str]:
  cmd = [sys.executable, '-m', module, f'--config={config}', f'--topology={topology}']
  cmd += [f'--chip_config={chip_config}'] if chip_config else []
  cmd += [f'--num_slices={num_slices}'] if num_slices else []
  return cmd + list(overrides)


def run_preflight(cmd: Sequence[str], topology: str) -> None:
  """Runs the pre-flight locally; any failure aborts before the pod is touched."""
  print(common.show(cmd), flush=True)
  code = subprocess.run(list(cmd), check=False).returncode
  if code != 0:
    raise InputError(f'pre-flight failed (exit code {code}) for {topology}: nothing was started on the pod')
  print(f'pre-flight passed for {topology}', flush=True)


def parse_install(spec: str) -> tuple[str, str]:
  """`git+URL@REV` -> (URL, REV). The revision is required so that every worker runs the same code."""
  url, sep, rev = spec.removeprefix('git+').rpartition('@')
  if not spec.startswith('git+') or not sep or not url or not rev or '/' in rev or ':' in rev:
    raise InputError(f'--install={spec!r} is not git+URL@REV (a revision is required)')
  return url, rev


def remote_config(config: str, code_dir: str | None) -> str:
  """The config path on the workers: relative to the copied tree (or to the clone's root)."""
  path, sep, arg = config.partition(':')
  rel = os.path.relpath(os.path.abspath(path), os.path.abspath(code_dir)) if code_dir else path
  if os.path.isabs(rel) or rel.split(os.sep)[0] == '..':
    where = code_dir or 'the repository'
    raise InputError(f'--config={config} must be inside the code shipped to the pod ({where})')
  return rel + sep + arg


def _placeholder_staging() -> str:
  """What a dry run prints for the private staging folder it does not create."""
  return os.path.join(tempfile.gettempdir(), 'overfeat_pod_XXXXXXXX')


def shipped_files(code_dir: str, excludes: Sequence[str] = ()) -> list[str] | None:
  """The files of a git checkout that are code: tracked or untracked but not ignored (`git ls-files --cached
  --others --exclude-standard`), existing, minus `excludes` (fnmatch patterns on the path or any of its parts);
  None when `code_dir` is not a git work tree (then `EXCLUDES` and `--exclude` decide). What the .gitignore
  keeps out (the demo's workdir/, built datasets, release weight files, checkpoints) never reaches the pod."""
  try:
    listed = subprocess.run(['git', '-C', code_dir, 'ls-files', '-z', '--cached', '--others', '--exclude-standard'],
                            capture_output=True, check=False)
  except FileNotFoundError:  # no git on this machine
    return None
  if listed.returncode != 0:
    return None
  names = sorted({n for n in listed.stdout.decode('utf-8', 'surrogateescape').split('\0') if n})
  excluded = lambda n: any(fnmatch.fnmatch(n, e) or any(fnmatch.fnmatch(part, e) for part in n.split('/'))
                           for e in excludes)
  return [n for n in names if os.path.lexists(os.path.join(code_dir, n)) and not excluded(n)]


def code_commands(pod: Pod, code_dir: str | None, install: str | None, remote_dir: str, extras: str,
                  excludes: Sequence[str] = EXCLUDES, staging: str | None = None,
                  file_list: str | None = None) -> list[tuple[list[str], bool]]:
  """(command, runs on the pod?) pairs that put the same code, pip-installed, on every worker.

  The tarball is packed in `staging`, a private folder (default: a placeholder under the temporary directory,
  for printing); with `file_list` (NUL-separated names, `shipped_files`) only those files are packed, else the
  whole `code_dir` minus `excludes`."""
  q = shlex.quote
  pip = f'python3 -m pip install -q -e {q(f"{remote_dir}[{extras}]" if extras else remote_dir)}'
  if install:
    url, rev = parse_install(install)
    remote = (f'rm -rf {q(remote_dir)} && git clone -q {q(url)} {q(remote_dir)} && '
              f'git -C {q(remote_dir)} checkout -q {q(rev)} && {pip}')
    return [(pod.ssh_all(remote), True)]
  tarball = os.path.join(staging or _placeholder_staging(), TARBALL)
  if file_list:
    pack = ['tar', '-czf', tarball, '-C', code_dir, '--null', '-T', file_list]
  else:
    pack = ['tar', '-czf', tarball, *[f'--exclude={e}' for e in excludes], '-C', code_dir, '.']
  copy = pod.command('scp', tarball, f'{pod.tpu_name}:{TARBALL}', '--worker=all')
  unpack = (f'rm -rf {q(remote_dir)} && mkdir -p {q(remote_dir)} && tar -xzf {TARBALL} -C {q(remote_dir)} '
            f'&& {pip}')
  return [(pack, False), (copy, True), (pod.ssh_all(unpack), True)]


def train_command(pod: Pod, remote_dir: str, config: str, workdir: str, overrides: Sequence[str],
                  module: str = common.TRAINER_MODULE) -> list[str]:
  """One ssh to all workers running the same trainer command; gcloud streams every worker's output here."""
  trainer = common.trainer_command('python3', config, workdir, overrides, module)
  return pod.ssh_all(f'cd {shlex.quote(remote_dir)} && OVERFEAT_CLUSTER=tpu PYTHONUNBUFFERED=1 '
                     f'{shlex.join(trainer)}')


def ensure_pod(pod: Pod, create_cmd: list[str] | None) -> None:
  """Reuses the TPU VM if `describe` finds it, else creates it (with --create) or stops."""
  describe = pod.command('describe', pod.tpu_name, '--format=value(state)')
  print(common.show(describe), flush=True)
  try:
    found = subprocess.run(describe, capture_output=True, text=True, check=False)
  except FileNotFoundError:
    raise InputError(f'command {pod.gcloud!r} not found: install the Google Cloud SDK') from None
  if found.returncode == 0:
    print(f'reusing TPU VM {pod.tpu_name} (state {found.stdout.strip() or "unknown"})', flush=True)
  elif create_cmd is None:
    raise InputError(f'TPU VM {pod.tpu_name} not found in {pod.zone}; pass --create to create it')
  else:
    common.run_checked(create_cmd, f'creating TPU VM {pod.tpu_name}')


def _validate_flags() -> Pod:
  pod = Pod(FLAGS.tpu_name, FLAGS.zone, FLAGS.project, FLAGS.gcloud)
  check_pod(pod, FLAGS.create, FLAGS.accelerator_type, FLAGS.runtime_version)
  chips(FLAGS.accelerator_type, FLAGS.topology)
  if not FLAGS.skip_preflight and not FLAGS.topology:
    raise InputError('--topology is required for the pre-flight (or pass --skip_preflight)')
  if bool(FLAGS.code_dir) == bool(FLAGS.install):
    raise InputError('give exactly one of --code_dir and --install')
  if FLAGS.code_dir and not os.path.isdir(FLAGS.code_dir):
    raise InputError(f'--code_dir={FLAGS.code_dir} is not a directory')
  if FLAGS.install:
    parse_install(FLAGS.install)
  parts = FLAGS.remote_dir.split('/')
  if not _REMOTE_RE.match(FLAGS.remote_dir) or any(p in ('', '.', '..') for p in parts):
    raise InputError(f'--remote_dir={FLAGS.remote_dir!r} must be a plain path relative to the home directory')
  if FLAGS.num_slices and FLAGS.num_slices > 1 and not FLAGS.dry_run:
    raise InputError('--num_slices > 1: this launcher starts one slice; use queued resources for multislice')
  common.check_config(FLAGS.config)
  if not FLAGS.workdir:
    raise InputError('--workdir is required')
  if not FLAGS.workdir.startswith('gs://'):
    print(f'warning: --workdir={FLAGS.workdir} is not gs://: multi-host checkpoints need storage every '
          'worker can reach', file=sys.stderr)
  return pod


def main(argv: list[str], overrides: list[str]) -> None:
  if len(argv) > 1:
    raise InputError(f'unexpected arguments {argv[1:]}; put trainer flags after --')
  pod = _validate_flags()
  # A private folder (mkdtemp: 0700, an unpredictable name) for the tarball: a fixed /tmp name could be a
  # symlink someone else planted. A dry run creates nothing and prints a placeholder.
  staging = None if FLAGS.dry_run or not FLAGS.code_dir else tempfile.mkdtemp(prefix='overfeat_pod_')
  try:
    _launch(pod, overrides, staging)
  finally:
    if staging:
      shutil.rmtree(staging, ignore_errors=True)


def _launch(pod: Pod, overrides: list[str], staging: str | None) -> None:
  files = shipped_files(FLAGS.code_dir, FLAGS.exclude) if FLAGS.code_dir else None
  file_list = None
  if files is not None:
    file_list = os.path.join(staging or _placeholder_staging(), 'files')
    if staging:
      with open(file_list, 'wb') as f:
        f.write(b''.join(os.fsencode(n) + b'\0' for n in files))
    print(f'shipping {len(files)} files of the git checkout {FLAGS.code_dir} (tracked, or untracked and not '
          'ignored)', flush=True)
  setup = code_commands(pod, FLAGS.code_dir, FLAGS.install, FLAGS.remote_dir, FLAGS.extras,
                        (*EXCLUDES, *FLAGS.exclude), staging, file_list)
  train = train_command(pod, FLAGS.remote_dir, remote_config(FLAGS.config, FLAGS.code_dir), FLAGS.workdir,
                        overrides, FLAGS.module)
  create = None
  if FLAGS.create:
    create = pod.command('create', pod.tpu_name, f'--accelerator-type={FLAGS.accelerator_type}',
                         f'--version={FLAGS.runtime_version}')
  if not FLAGS.skip_preflight:
    run_preflight(preflight_command(FLAGS.preflight_module, FLAGS.config, FLAGS.topology, overrides,
                                    FLAGS.chip_config, FLAGS.num_slices), FLAGS.topology)
  if FLAGS.dry_run:
    describe = pod.command('describe', pod.tpu_name, '--format=value(state)')
    lines = [common.show(describe)]
    lines += ['# if describe fails:', common.show(create)] if create else []
    lines += [common.show(cmd) for cmd, _ in setup] + [common.show(train)]
    print('\n'.join(['# dry run: would run'] + lines), flush=True)
    return
  ensure_pod(pod, create)
  for cmd, on_pod in setup:
    common.run_checked(cmd, 'copying the code to the pod' if on_pod else 'packing the code')
  common.run_checked(train, 'training on the pod')


if __name__ == '__main__':
  _define_flags()
  common.main_with_overrides(main)
