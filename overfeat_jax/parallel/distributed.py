"""Multi-host start-up: one `initialize()` for a laptop, a SLURM GPU cluster, a TPU pod, local processes.

Every entry point calls `initialize(...)` before any jax computation. Which cluster we are on is decided by
the pure function `resolve_cluster(env, **explicit)`, so the mapping from environment variables to
`jax.distributed.initialize` arguments is tested without starting anything.

Precedence, field by field: explicit arguments (the trainer's flags) > `OVERFEAT_*` variables > SLURM.
When none of these apply, jax's own cluster detection (`jax._src.clusters`) is used where its markers are
present: on a Cloud TPU VM (GCE or GKE) jax detects everything itself; under OpenMPI's `mpirun`
(`OMPI_MCA_orte_hnp_uri`, with `OMPI_COMM_WORLD_SIZE` > 1) and in a Kubernetes indexed job
(`KUBERNETES_SERVICE_HOST` and `JOB_COMPLETION_INDEX`; needs `pip install kubernetes`) jax is asked for that
one method; `OVERFEAT_CLUSTER=<method>` (tpu, gcetpu, gketpu, ompi, k8s, mpi4py) forces one. A single process
with nothing configured starts no coordination service at all.
"""

import dataclasses
import os
import re
from typing import Mapping, Sequence

from absl import logging

from overfeat_jax.errors import InputError

# Generic variables, for any scheduler: what `launch.local` and hand-written scripts can set.
ENV_COORDINATOR_ADDRESS = 'OVERFEAT_COORDINATOR_ADDRESS'
ENV_NUM_PROCESSES = 'OVERFEAT_NUM_PROCESSES'
ENV_PROCESS_ID = 'OVERFEAT_PROCESS_ID'
ENV_LOCAL_DEVICE_IDS = 'OVERFEAT_LOCAL_DEVICE_IDS'
ENV_COORDINATOR_PORT = 'OVERFEAT_COORDINATOR_PORT'
# `OVERFEAT_CLUSTER=tpu` forces TPU auto-detection (set by `launch.tpu_pod`, whose ssh shells may lack the
# TPU_* variables because jax reads them from the metadata server); another of `JAX_METHODS` forces that jax
# detector (e.g. `mpi4py`, which jax never tries unasked).
ENV_CLUSTER = 'OVERFEAT_CLUSTER'
# jax's detectors that `OVERFEAT_CLUSTER` may name: what they read, and the `cluster_detection_method` that
# selects exactly that one (`jax._src.clusters.ClusterEnv.name`; jax's Kubernetes detector has no name, so it
# is reached by jax's own scan of every detector).
JAX_METHODS = {'tpu': 'Cloud TPU VM', 'gcetpu': 'GCE TPU VM (metadata server)',
               'gketpu': 'GKE TPU (TPU_WORKER_HOSTNAMES)', 'ompi': 'OpenMPI mpirun (OMPI_* variables)',
               'k8s': 'Kubernetes indexed job (API server)', 'mpi4py': 'mpi4py (MPI.COMM_WORLD)'}
_UNNAMED_IN_JAX = ('k8s',)
# Marks of a multi-process launch that jax detects without being asked (mpi4py is opt-in in jax too).
OMPI_MARKER, OMPI_SIZE = 'OMPI_MCA_orte_hnp_uri', 'OMPI_COMM_WORLD_SIZE'
K8S_MARKERS = ('KUBERNETES_SERVICE_HOST', 'JOB_COMPLETION_INDEX')  # a pod alone is not a job of several

# Any of these marks a Cloud TPU VM (the runtime sets them; jax's own detector reads the same ones).
TPU_MARKERS = ('TPU_WORKER_ID', 'TPU_WORKER_HOSTNAMES', 'TPU_PROCESS_ADDRESSES', 'CLOUD_TPU_TASK_ID',
               'MEGASCALE_COORDINATOR_ADDRESS')

# SLURM: without OVERFEAT_COORDINATOR_PORT the port is derived from the job id (as jax does), so two jobs
# sharing a first node do not collide; without a job id it is this one.
DEFAULT_PORT = 61440
_PORT_SPAN = 4096

_HOST_CHARS = re.compile(r'^[A-Za-z0-9._-]+$')
_RANGE = re.compile(r'^(\d+)(?:-(\d+))?$')


@dataclasses.dataclass(frozen=True)
class ClusterSpec:
  """What `jax.distributed.initialize` gets. `auto_detect`: let jax fill the unset fields (with
  `detection_method` set, only that jax detector is used)."""
  source: str  # 'explicit', 'env', 'slurm', 'tpu' or 'jax:<method>': where the values came from.
  coordinator_address: str | None = None
  num_processes: int | None = None
  process_id: int | None = None
  local_device_ids: tuple[int, ...] | None = None
  auto_detect: bool = False
  detection_method: str | None = None

  def initialize_kwargs(self) -> dict:
    """Keyword arguments for `jax.distributed.initialize` (without the timeout)."""
    kwargs = {}
    for name in ('coordinator_address', 'num_processes', 'process_id', 'local_device_ids'):
      value = getattr(self, name)
      if value is not None:
        kwargs[name] = list(value) if name == 'local_device_ids' else value
    if not self.auto_detect:
      # We resolved everything: stop jax's own SLURM detector from pinning a whole-node process to GPU 0.
      kwargs['cluster_detection_method'] = 'deactivate'
    elif self.detection_method and self.detection_method not in _UNNAMED_IN_JAX:
      kwargs['cluster_detection_method'] = self.detection_method
    return kwargs


def _expand_item(item: str, nodelist: str) -> list[str]:
  """Expands one host expression, e.g. `rack[1-2]-n[01,03]` -> 4 hosts, zero padding kept."""
  if not item:
    raise InputError(f'cannot parse SLURM nodelist {nodelist!r}: it has an empty host entry')
  parts = re.findall(r'\[([^\[\]]*)\]|([^\[\]]+)', item)
  if ''.join(f'[{b}]' if b else lit for b, lit in parts) != item:
    raise InputError(f'cannot parse SLURM nodelist {nodelist!r}: bad brackets in {item!r}')
  hosts = ['']
  for bracket, literal in parts:
    if literal:
      if not _HOST_CHARS.match(literal):
        raise InputError(f'cannot parse SLURM nodelist {nodelist!r}: bad host name part {literal!r}')
      hosts = [h + literal for h in hosts]
      continue
    choices = []
    for rng in bracket.split(','):
      m = _RANGE.match(rng)
      if not m or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
        raise InputError(f'cannot parse SLURM nodelist {nodelist!r}: bad range {rng!r}')
      lo, hi = m.group(1), m.group(2) or m.group(1)
      width = len(lo) if lo.startswith('0') else 0
      choices += [str(n).zfill(width) for n in range(int(lo), int(hi) + 1)]
    hosts = [h + c for h in hosts for c in choices]
  return hosts


def _split_top_level(nodelist: str) -> list[str]:
  """Splits on the commas outside brackets: `a[1,2],b` -> [`a[1,2]`, `b`]."""
  items, depth, start = [], 0, 0
  for i, ch in enumerate(nodelist):
    depth += {'[': 1, ']': -1}.get(ch, 0)
    if depth not in (0, 1):
      raise InputError(f'cannot parse SLURM nodelist {nodelist!r}: unbalanced brackets')
    if ch == ',' and depth == 0:
      items.append(nodelist[start:i])
      start = i + 1
  if depth:
    raise InputError(f'cannot parse SLURM nodelist {nodelist!r}: unbalanced brackets')
  return items + [nodelist[start:]]


def expand_nodelist(nodelist: str) -> list[str]:
  """SLURM's compressed host list (`node[001-004,007],gpu17`) -> every host name, in order."""
  nodelist = nodelist.strip()
  if not nodelist:
    raise InputError('cannot parse SLURM nodelist: it is empty')
  return [h for item in _split_top_level(nodelist) for h in _expand_item(item, nodelist)]


def first_host(nodelist: str) -> str:
  """The coordinator host of a SLURM job: the first host of its nodelist."""
  return expand_nodelist(nodelist)[0]


def _int_var(env: Mapping[str, str], name: str) -> int | None:
  value = env.get(name)
  if value is None or value.strip() == '':
    return None
  try:
    return int(value)
  except ValueError:
    raise InputError(f'environment variable {name}={value!r} is not an integer') from None


def _ids_var(env: Mapping[str, str], name: str) -> tuple[int, ...] | None:
  value = env.get(name)
  if not value:
    return None
  try:
    return tuple(int(v) for v in value.split(','))
  except ValueError:
    raise InputError(f'environment variable {name}={value!r} is not a comma-separated list of ints') from None


def _generic_from_env(env: Mapping[str, str]) -> ClusterSpec | None:
  names = (ENV_COORDINATOR_ADDRESS, ENV_NUM_PROCESSES, ENV_PROCESS_ID)
  if not any(env.get(n) for n in names):
    return None
  return ClusterSpec('env', env.get(ENV_COORDINATOR_ADDRESS) or None, _int_var(env, ENV_NUM_PROCESSES),
                     _int_var(env, ENV_PROCESS_ID), _ids_var(env, ENV_LOCAL_DEVICE_IDS))


def _slurm_port(env: Mapping[str, str]) -> int:
  port = _int_var(env, ENV_COORDINATOR_PORT)
  if port is not None:
    return port
  job_id = _int_var(env, 'SLURM_JOB_ID')
  return DEFAULT_PORT if job_id is None else DEFAULT_PORT + job_id % _PORT_SPAN


def _slurm_from_env(env: Mapping[str, str]) -> ClusterSpec | None:
  """SLURM task variables -> spec. Several tasks per node: each task owns GPU `SLURM_LOCALID`."""
  if 'SLURM_PROCID' not in env or not ('SLURM_STEP_NUM_TASKS' in env or 'SLURM_NTASKS' in env):
    return None
  ntasks = _int_var(env, 'SLURM_STEP_NUM_TASKS') or _int_var(env, 'SLURM_NTASKS')
  nodelist = env.get('SLURM_STEP_NODELIST') or env.get('SLURM_JOB_NODELIST') or env.get('SLURM_NODELIST')
  coordinator = None
  if nodelist is not None:
    coordinator = f'{first_host(nodelist)}:{_slurm_port(env)}'
  nnodes = _int_var(env, 'SLURM_STEP_NUM_NODES') or _int_var(env, 'SLURM_JOB_NUM_NODES') or _int_var(
      env, 'SLURM_NNODES')
  local_id = _int_var(env, 'SLURM_LOCALID')
  local_ids = None
  if local_id is not None and nnodes is not None and ntasks is not None and ntasks > nnodes:
    local_ids = (local_id,)
  return ClusterSpec('slurm', coordinator, ntasks, _int_var(env, 'SLURM_PROCID'), local_ids)


def _on_tpu_vm(env: Mapping[str, str]) -> bool:
  return env.get(ENV_CLUSTER, '').lower() == 'tpu' or any(env.get(m) for m in TPU_MARKERS)


def _jax_detected(env: Mapping[str, str]) -> ClusterSpec | None:
  """The jax detector this environment calls for (forced by `OVERFEAT_CLUSTER`, or OpenMPI / Kubernetes
  indexed-job markers), or None; a one-process `mpirun -np 1` stays plain (None)."""
  forced = env.get(ENV_CLUSTER, '').strip().lower()
  if forced and forced != 'tpu':
    if forced not in JAX_METHODS:
      raise InputError(f'{ENV_CLUSTER}={forced!r} is not one of {sorted(JAX_METHODS)}')
    method = forced
  elif env.get(OMPI_MARKER):
    if _int_var(env, OMPI_SIZE) == 1:
      return None
    method = 'ompi'
  elif all(env.get(m) for m in K8S_MARKERS):
    method = 'k8s'
  else:
    return None
  return ClusterSpec(f'jax:{method}', auto_detect=True, detection_method=method)


def _check_address(address: str, source: str) -> None:
  host, sep, port = address.rpartition(':')
  if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise InputError(f'coordinator address {address!r} (from {source}) is not HOST:PORT')


def _validate(spec: ClusterSpec) -> ClusterSpec | None:
  """Rejects inconsistent values; a one-process cluster needs no coordination service (-> None)."""
  n, pid, src = spec.num_processes, spec.process_id, spec.source
  if n is not None and n < 1:
    raise InputError(f'num_processes={n} (from {src}) must be at least 1')
  if pid is not None and pid < 0:
    raise InputError(f'process_id={pid} (from {src}) must be non-negative')
  if n is not None and pid is not None and pid >= n:
    raise InputError(f'process_id={pid} must be smaller than num_processes={n} (from {src})')
  if spec.coordinator_address is not None:
    _check_address(spec.coordinator_address, src)
  if spec.auto_detect:
    return spec
  if n is None:
    raise InputError(f'num_processes is not set (from {src}): give --num_processes or {ENV_NUM_PROCESSES}')
  if n == 1:
    return None
  if spec.coordinator_address is None:
    raise InputError(f'num_processes={n} needs a coordinator address (HOST:PORT), none is set (from {src})')
  if pid is None:
    raise InputError(f'num_processes={n} needs a process_id, none is set (from {src})')
  return spec


def resolve_cluster(env: Mapping[str, str], coordinator_address: str | None = None,
                    num_processes: int | None = None, process_id: int | None = None,
                    local_device_ids: Sequence[int] | None = None) -> ClusterSpec | None:
  """Maps explicit arguments and environment variables to a `ClusterSpec`, or None for one plain process.

  Raises:
    InputError: values that cannot work together (process_id >= num_processes, several processes but no
      coordinator, an unparsable SLURM nodelist, a non-integer variable).
  """
  explicit = {'coordinator_address': coordinator_address, 'num_processes': num_processes,
              'process_id': process_id,
              'local_device_ids': None if local_device_ids is None else tuple(local_device_ids)}
  given = {k: v for k, v in explicit.items() if v is not None}
  base = _generic_from_env(env) or _slurm_from_env(env)
  if base is None:
    detected = _jax_detected(env)
    if detected is not None:
      source = detected.source if not given else f'{detected.source} + explicit arguments'
      return _validate(dataclasses.replace(detected, source=source, **given))
  if base is None and _on_tpu_vm(env):
    return _validate(ClusterSpec('tpu', auto_detect=True, **given))
  if base is None and not given:
    return None
  if base is None:
    if set(given) == {'local_device_ids'}:
      raise InputError('local_device_ids was given without a cluster (no num_processes, no coordinator)')
    return _validate(ClusterSpec('explicit', **given))
  source = base.source if not given else f'{base.source} + explicit arguments'
  return _validate(dataclasses.replace(base, source=source, **given))


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, local_device_ids: Sequence[int] | None = None,
               initialization_timeout: int = 300) -> None:
  """Starts `jax.distributed` when this run has several processes; a no-op for one plain process.

  Must run before any jax computation. A peer that never arrives makes jax abort the process (SIGABRT) after
  `initialization_timeout` seconds: run workers under a supervisor with a timeout (`launch.local` does).
  """
  spec = resolve_cluster(os.environ, coordinator_address, num_processes, process_id, local_device_ids)
  if spec is None:
    logging.info('Single process: jax.distributed not started.')
    return
  import jax  # pylint: disable=g-import-not-at-top  (keeps resolve_cluster importable without a backend)
  # Cross-process collectives of the CPU backend; gloo is jax 0.10's default, explicit for clarity. It only
  # concerns the CPU client, so it is harmless on GPU and TPU hosts.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  # SIGTERM stays ours: jax's preemption notifier would install a handler that only sets a flag (polled once a
  # second), so a SIGTERM during start-up or compilation would neither stop nor save. Outside the training
  # loop SIGTERM ends the process at once; inside it every host stops at the same step (train/loop.Preemption).
  jax.config.update('jax_enable_preemption_service', False)
  if spec.detection_method:
    logging.info('Cluster detected: %s (jax detector %r); jax.distributed reads the rest from it.',
                 JAX_METHODS[spec.detection_method], spec.detection_method)
  logging.info('Starting jax.distributed from %s: %s', spec.source, spec)
  jax.distributed.initialize(initialization_timeout=initialization_timeout, **spec.initialize_kwargs())
  logging.info('jax.distributed ready: process %d of %d, %d local of %d global devices.',
               jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count())
