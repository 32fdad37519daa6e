"""Environment -> `jax.distributed.initialize` arguments, tested without starting any coordination service."""

import jax
import pytest

from overfeat_jax.errors import InputError
from overfeat_jax.parallel import distributed
from overfeat_jax.parallel.distributed import ClusterSpec, resolve_cluster
from tests import xla_flags


def _slurm_env(**overrides):
  env = {'SLURM_JOB_ID': '4242', 'SLURM_PROCID': '3', 'SLURM_NTASKS': '4', 'SLURM_LOCALID': '0',
         'SLURM_JOB_NUM_NODES': '4', 'SLURM_JOB_NODELIST': 'node[001-004,007],gpu17'}
  env.update(overrides)
  return {k: v for k, v in env.items() if v is not None}


@pytest.mark.parametrize('nodelist, hosts', [
    ('gpu17', ['gpu17']),
    ('node001,gpu17', ['node001', 'gpu17']),
    ('node[001-004,007],gpu17', ['node001', 'node002', 'node003', 'node004', 'node007', 'gpu17']),
    ('gpu17,node[1-2]', ['gpu17', 'node1', 'node2']),
    ('a-b.c[08-10]', ['a-b.c08', 'a-b.c09', 'a-b.c10']),
    ('rack[1-2]-n[01,03]', ['rack1-n01', 'rack1-n03', 'rack2-n01', 'rack2-n03']),
    ('n[7]', ['n7']),
])
def test_expand_nodelist(nodelist, hosts):
  assert distributed.expand_nodelist(nodelist) == hosts
  assert distributed.first_host(nodelist) == hosts[0]


@pytest.mark.parametrize('nodelist', ['', 'node[', 'node]1', 'node[]', 'node[1-]', 'node[3-1]', 'node[a-b]',
                                      'n[[1]]', ',gpu1', 'gpu1,,gpu2', 'gpu 1', 'node[1-2'])
def test_unparsable_nodelist_is_an_input_error(nodelist):
  with pytest.raises(InputError, match='nodelist'):
    distributed.expand_nodelist(nodelist)


def test_nothing_configured_is_a_single_process():
  assert resolve_cluster({}) is None
  assert resolve_cluster({'HOME': '/root', 'SLURM_JOB_ID': '7'}) is None  # a login shell, not a task


def test_slurm_one_process_per_node_owns_all_its_gpus():
  spec = resolve_cluster(_slurm_env())
  assert spec == ClusterSpec('slurm', f'node001:{61440 + 4242 % 4096}', 4, 3, None)
  # jax's own SLURM detector would otherwise pin this whole-node process to GPU SLURM_LOCALID.
  assert spec.initialize_kwargs() == {'coordinator_address': 'node001:61586', 'num_processes': 4,
                                      'process_id': 3, 'cluster_detection_method': 'deactivate'}


def test_slurm_one_process_per_gpu_selects_its_local_gpu():
  env = _slurm_env(SLURM_NTASKS='16', SLURM_PROCID='13', SLURM_LOCALID='1', OVERFEAT_COORDINATOR_PORT='1234')
  spec = resolve_cluster(env)
  assert spec == ClusterSpec('slurm', 'node001:1234', 16, 13, (1,))
  assert spec.initialize_kwargs()['local_device_ids'] == [1]


def test_slurm_step_variables_win_over_job_variables():
  env = _slurm_env(SLURM_STEP_NODELIST='gpu[20-21]', SLURM_STEP_NUM_TASKS='2', SLURM_STEP_NUM_NODES='2',
                   SLURM_PROCID='1', SLURM_JOB_ID=None)
  assert resolve_cluster(env) == ClusterSpec('slurm', 'gpu20:61440', 2, 1, None)


def test_slurm_single_task_needs_no_service():
  assert resolve_cluster(_slurm_env(SLURM_NTASKS='1', SLURM_PROCID='0', SLURM_JOB_NUM_NODES='1')) is None


def test_slurm_bad_nodelist_is_an_input_error():
  with pytest.raises(InputError, match='nodelist'):
    resolve_cluster(_slurm_env(SLURM_JOB_NODELIST='node[1-'))


def test_generic_variables():
  env = {'OVERFEAT_COORDINATOR_ADDRESS': '10.0.0.1:5000', 'OVERFEAT_NUM_PROCESSES': '2',
         'OVERFEAT_PROCESS_ID': '1', 'OVERFEAT_LOCAL_DEVICE_IDS': '2,3'}
  assert resolve_cluster(env) == ClusterSpec('env', '10.0.0.1:5000', 2, 1, (2, 3))


def test_generic_variables_win_over_slurm():
  env = _slurm_env(OVERFEAT_COORDINATOR_ADDRESS='head:9', OVERFEAT_NUM_PROCESSES='2', OVERFEAT_PROCESS_ID='0')
  assert resolve_cluster(env) == ClusterSpec('env', 'head:9', 2, 0, None)


def test_explicit_arguments_win_field_by_field():
  spec = resolve_cluster(_slurm_env(), coordinator_address='other:77')
  assert spec == ClusterSpec('slurm + explicit arguments', 'other:77', 4, 3, None)
  spec = resolve_cluster({'OVERFEAT_NUM_PROCESSES': '8', 'OVERFEAT_PROCESS_ID': '7',
                          'OVERFEAT_COORDINATOR_ADDRESS': 'h:1'}, num_processes=2, process_id=1)
  assert (spec.coordinator_address, spec.num_processes, spec.process_id) == ('h:1', 2, 1)


def test_explicit_arguments_alone():
  spec = resolve_cluster({}, coordinator_address='127.0.0.1:8476', num_processes=2, process_id=0)
  assert spec == ClusterSpec('explicit', '127.0.0.1:8476', 2, 0, None)
  assert resolve_cluster({}, num_processes=1, process_id=0) is None


@pytest.mark.parametrize('marker', ['TPU_WORKER_ID', 'TPU_WORKER_HOSTNAMES', 'CLOUD_TPU_TASK_ID'])
def test_tpu_vm_lets_jax_detect_everything(marker):
  spec = resolve_cluster({marker: '0'})
  assert spec == ClusterSpec('tpu', auto_detect=True)
  assert spec.initialize_kwargs() == {}


def test_tpu_forced_by_launcher_variable_and_explicit_still_wins():
  assert resolve_cluster({'OVERFEAT_CLUSTER': 'tpu'}).auto_detect
  spec = resolve_cluster({'TPU_WORKER_ID': '1'}, coordinator_address='w0:8476')
  assert spec.initialize_kwargs() == {'coordinator_address': 'w0:8476'}


@pytest.mark.parametrize('env, explicit, match', [
    ({}, {'coordinator_address': 'h:1', 'num_processes': 2, 'process_id': 2}, 'smaller than'),
    ({}, {'coordinator_address': 'h:1', 'num_processes': 2, 'process_id': -1}, 'non-negative'),
    ({}, {'coordinator_address': 'h:1', 'num_processes': 0, 'process_id': 0}, 'at least 1'),
    ({}, {'num_processes': 2, 'process_id': 0}, 'coordinator'),
    ({}, {'coordinator_address': 'h:1', 'num_processes': 2}, 'process_id'),
    ({}, {'coordinator_address': 'h:1', 'process_id': 0}, 'num_processes'),
    ({}, {'coordinator_address': 'h', 'num_processes': 2, 'process_id': 0}, 'HOST:PORT'),
    ({}, {'coordinator_address': 'h:99999', 'num_processes': 2, 'process_id': 0}, 'HOST:PORT'),
    ({}, {'local_device_ids': [0]}, 'without a cluster'),
    ({'SLURM_PROCID': '4', 'SLURM_NTASKS': '4', 'SLURM_JOB_NODELIST': 'n1'}, {}, 'smaller than'),
    ({'SLURM_PROCID': 'x', 'SLURM_NTASKS': '4', 'SLURM_JOB_NODELIST': 'n1'}, {}, 'SLURM_PROCID'),
    ({'SLURM_PROCID': '0', 'SLURM_NTASKS': '4'}, {}, 'coordinator'),
    ({'OVERFEAT_NUM_PROCESSES': '2', 'OVERFEAT_PROCESS_ID': '0'}, {}, 'coordinator'),
    ({'OVERFEAT_COORDINATOR_ADDRESS': 'h:1', 'OVERFEAT_NUM_PROCESSES': '2', 'OVERFEAT_PROCESS_ID': '0',
      'OVERFEAT_LOCAL_DEVICE_IDS': '0;1'}, {}, 'OVERFEAT_LOCAL_DEVICE_IDS'),
])
def test_inconsistent_values_are_input_errors(env, explicit, match):
  with pytest.raises(InputError, match=match):
    resolve_cluster(env, **explicit)


def test_initialize_single_process_starts_nothing(monkeypatch):
  for name in ('SLURM_PROCID', 'SLURM_NTASKS', 'OVERFEAT_NUM_PROCESSES', 'OVERFEAT_CLUSTER',
               'OVERFEAT_COORDINATOR_ADDRESS', 'OVERFEAT_PROCESS_ID', *distributed.TPU_MARKERS):
    monkeypatch.delenv(name, raising=False)
  monkeypatch.setattr(jax.distributed, 'initialize', lambda **kw: pytest.fail(f'started with {kw}'))
  distributed.initialize()


def test_initialize_passes_resolved_arguments_to_jax(monkeypatch):
  for name in ('SLURM_PROCID', 'SLURM_NTASKS', *distributed.TPU_MARKERS):
    monkeypatch.delenv(name, raising=False)
  monkeypatch.setenv('OVERFEAT_COORDINATOR_ADDRESS', 'head:5000')
  monkeypatch.setenv('OVERFEAT_NUM_PROCESSES', '4')
  monkeypatch.setenv('OVERFEAT_PROCESS_ID', '2')
  calls = []
  monkeypatch.setattr(jax.distributed, 'initialize', lambda **kw: calls.append(kw))
  distributed.initialize(process_id=1, initialization_timeout=12)
  assert calls == [{'coordinator_address': 'head:5000', 'num_processes': 4, 'process_id': 1,
                    'cluster_detection_method': 'deactivate', 'initialization_timeout': 12}]
  assert jax.config.jax_cpu_collectives_implementation == 'gloo'


def _ompi_env(rank: int, size: int = 2, **extra) -> dict:
  """What `mpirun -np SIZE` (OpenMPI 4) sets in each rank's environment, on localhost."""
  return {'OMPI_MCA_orte_hnp_uri': '3573743616.0;tcp://127.0.0.1,10.0.0.5:38465',
          'OMPI_COMM_WORLD_SIZE': str(size), 'OMPI_COMM_WORLD_RANK': str(rank),
          'OMPI_COMM_WORLD_LOCAL_RANK': str(rank), 'OMPI_COMM_WORLD_LOCAL_SIZE': str(size), **extra}


def test_openmpi_falls_back_to_jax_detection():
  spec = resolve_cluster(_ompi_env(1))
  assert spec == ClusterSpec('jax:ompi', auto_detect=True, detection_method='ompi')
  assert spec.initialize_kwargs() == {'cluster_detection_method': 'ompi'}
  # A flag still wins field by field; jax fills the rest from the OMPI variables.
  spec = resolve_cluster(_ompi_env(0), coordinator_address='head:1234')
  assert spec.source == 'jax:ompi + explicit arguments'
  assert spec.initialize_kwargs() == {'coordinator_address': 'head:1234', 'cluster_detection_method': 'ompi'}


def test_project_variables_and_slurm_win_over_jax_detection():
  env = {**_ompi_env(1), 'OVERFEAT_COORDINATOR_ADDRESS': 'h:1', 'OVERFEAT_NUM_PROCESSES': '2',
         'OVERFEAT_PROCESS_ID': '1'}
  assert resolve_cluster(env).source == 'env'
  assert resolve_cluster({**_slurm_env(), **_ompi_env(1)}).source == 'slurm'


def test_kubernetes_indexed_job_and_forced_methods():
  pod = {'KUBERNETES_SERVICE_HOST': '10.96.0.1', 'HOSTNAME': 'train-0'}
  assert resolve_cluster(pod) is None  # a pod alone (a notebook, a one-replica job) stays one plain process
  spec = resolve_cluster({**pod, 'JOB_COMPLETION_INDEX': '3'})
  assert (spec.source, spec.auto_detect) == ('jax:k8s', True)
  assert spec.initialize_kwargs() == {}  # jax's scan of its detectors finds Kubernetes (it has no name to ask)
  assert resolve_cluster({'OVERFEAT_CLUSTER': 'mpi4py'}).detection_method == 'mpi4py'
  assert resolve_cluster({'OVERFEAT_CLUSTER': 'tpu'}) == ClusterSpec('tpu', auto_detect=True)
  with pytest.raises(InputError, match='OVERFEAT_CLUSTER'):
    resolve_cluster({'OVERFEAT_CLUSTER': 'pbs'})


def test_single_rank_mpirun_stays_plain():
  assert resolve_cluster(_ompi_env(0, size=1)) is None


def test_jax_knows_every_method_we_may_ask_for():
  from jax._src import clusters  # pylint: disable=g-import-not-at-top  (the registry jax itself consults)
  names = {env.name for env in clusters.ClusterEnv._cluster_types}  # pylint: disable=protected-access
  assert set(distributed.JAX_METHODS) - set(distributed._UNNAMED_IN_JAX) <= names, names  # pylint: disable=protected-access
  assert any(env.__name__ == 'K8sCluster' and not env.name for env in clusters.ClusterEnv._cluster_types)  # pylint: disable=protected-access


@pytest.mark.multiprocess
def test_two_processes_with_openmpi_variables_initialize_through_jax_detection(tmp_path):
  """Two real processes with the environment of `mpirun -np 2` on localhost (no MPI installed): the project's
  resolver finds nothing of its own, jax's OpenMPI detector supplies coordinator, count and rank, and a global
  all-reduce over both processes is correct."""
  import os  # pylint: disable=g-import-not-at-top
  import pathlib  # pylint: disable=g-import-not-at-top
  import socket  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  worker = pathlib.Path(__file__).resolve().parents[1] / 'launch' / '_allreduce_worker.py'
  base = {k: v for k, v in os.environ.items()
          if not k.startswith(('OVERFEAT_', 'SLURM_', 'OMPI_', 'TPU_', 'KUBERNETES_'))}
  base.update(JAX_PLATFORMS='cpu', XLA_FLAGS=xla_flags.FAST_COMPILE, JAX_COORDINATOR_PORT=str(port),
              PYTHONPATH=str(pathlib.Path(__file__).resolve().parents[2]))
  procs = [subprocess.Popen([sys.executable, str(worker), '--logtostderr'], env={**base, **_ompi_env(rank)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in range(2)]
  outs = []
  try:
    for p in procs:
      outs.append(p.communicate(timeout=120))
  finally:
    for p in procs:
      p.kill()
  for rank, (p, (out, err)) in enumerate(zip(procs, outs)):
    assert p.returncode == 0, err[-3000:]
    assert f'allreduce ok: process {rank} of 2, 2 devices' in out, out
    assert "Cluster detected: OpenMPI mpirun (OMPI_* variables) (jax detector 'ompi')" in err, err[-3000:]
