"""TPU pod pre-flight: topology parsing, compile-only slices, the trainer's programs compiled for TPU topologies
(shardings, collectives, memory, FLOPs), the fit search, and the CLI's exit statuses.

The compile tests need libtpu (`pip install -e '.[tpu]'`) and are skipped, saying so, without it. A TPU compile
of even a narrow OverFeat takes 10-40 s on 2 cores, so they use width divisor 32 and tiny per-device batches.
"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from overfeat_jax.errors import InputError
from overfeat_jax.parallel import aot, topology

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GIB = 1024 ** 3
requires_libtpu = pytest.mark.skipif(not topology.libtpu_available(),
                                     reason="libtpu not importable: pip install -e '.[tpu]'")


def load_config(name: str, **overrides):
  """experiments/configs/<name>.py's config with dotted-path overrides ('model.width_divisor': 32)."""
  path = os.path.join(REPO, 'experiments', 'configs', f'{name}.py')
  spec = importlib.util.spec_from_file_location(f'preflight_test_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  for key, value in overrides.items():
    *parents, leaf = key.split('.')
    node = config
    for parent in parents:
      node = node[parent]
    node[leaf] = value
  return config


def run_cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
  return subprocess.run([sys.executable, '-m', 'overfeat_jax.preflight', *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=timeout, check=False)


# --- pure logic ------------------------------------------------------------------------------------------------
HLO = """
HloModule jit_train_step
%fused_computation (p: f32[8]) -> f32[8] { ... }
  %all-reduce-start.1 = f32[8]{0} all-reduce-start(f32[8]{0} %fusion.2), replica_groups={{0,1}}, to_apply=%add
  %all-reduce-done.1 = f32[8]{0} all-reduce-done(f32[8]{0} %all-reduce-start.1)
  %all-reduce.7 = f32[] all-reduce(f32[] %x), replica_groups={{0,1}}, to_apply=%add
  %all-gather.2 = f32[16]{0} all-gather(f32[8]{0} %y), dimensions={0}
  %collective-permute-start = (f32[4], f32[4]) collective-permute-start(f32[4] %z), source_target_pairs={{0,1}}
  %collective-permute-done = f32[4] collective-permute-done(%collective-permute-start)
  %copy.all-reduce.3 = f32[8]{0} copy(f32[8]{0} %all-reduce-done.1)
"""


def test_count_collectives_counts_ops_once_and_ignores_names():
  assert aot.count_collectives(HLO) == {'all-reduce': 2, 'all-gather': 1, 'collective-permute': 1}
  assert aot.count_collectives('%add = f32[] add(f32[] %a, f32[] %b)') == {}


@pytest.mark.parametrize('limit,failing', [(37, 100), (1, 2), (99, 100), (1000, 4096)])
def test_bisect_largest_is_exact_with_enough_probes(limit, failing):
  probed = []

  def fits(n):
    probed.append(n)
    return n <= limit

  lo, hi, probes = aot.bisect_largest(fits, failing, max_probes=20)
  assert (lo, hi) == (limit, limit + 1)
  assert probes == len(probed) <= failing.bit_length()
  assert all(1 <= n < failing for n in probed)


def test_bisect_largest_stops_at_its_budget_with_a_true_bracket():
  # Halving from 4096: 2048, 1024, 512 fail, 256 fits; the budget ends there.
  assert aot.bisect_largest(lambda n: n <= 300, 4096, max_probes=4) == (256, 512, 4)
  assert aot.bisect_largest(lambda n: False, 64, max_probes=10) == (0, 1, 6)


def test_oom_line_takes_the_compilers_memory_sentence():
  error = RuntimeError('RESOURCE_EXHAUSTED: XLA:TPU compile permanent error. Ran out of memory in memory space '
                       'hbm. Used 18.58G of 15.75G hbm. Exceeded hbm capacity by 2.83G.\n\nTotal hbm usage ...')
  assert aot.is_out_of_memory(error)
  assert aot.oom_line(error).startswith('RESOURCE_EXHAUSTED: XLA:TPU compile permanent error. Ran out of memory')
  assert not aot.is_out_of_memory(ValueError('INVALID_ARGUMENT: bad shape'))


@pytest.mark.parametrize('name', ['v5litepod-16', 'v5e', 'v5e:4x', '4x4', 'v5e:4x4x4x4', 'tpu:2x2', ''])
def test_parse_name_rejects_non_topology_names(name):
  with pytest.raises(InputError, match='GENERATION:AxB'):
    topology.parse_name(name)


def test_parse_name_and_chip_config():
  assert topology.parse_name('v5e:4x8') == ('v5e', (4, 8))
  assert topology.parse_name('v4:2x2x4') == ('v4', (2, 2, 4))
  assert topology.resolve_chip_config('v4', 'auto') == 'megacore'
  assert topology.resolve_chip_config('v5', 'auto') == 'megacore'
  assert topology.resolve_chip_config('v5e', 'auto') == 'default'
  assert topology.resolve_chip_config('v4', 'default') == 'default'
  with pytest.raises(InputError):
    topology.resolve_chip_config('v4', 'dual')
