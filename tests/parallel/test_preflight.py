"""TPU pod pre-flight: topology parsing, compile-only slices, the trainer's programs compiled for TPU
topologies (shardings, collectives, memory, FLOPs), the fit search, and the CLI's exit statuses.

The compile tests need libtpu (`pip install -e '.[tpu]'`) and are skipped, saying so, without it. A TPU
compile of even a narrow OverFeat takes 10-40 s on 2 cores, so they use width divisor 32 and small
per-device batches.
"""

import importlib.util
import json
import os
import subprocess
import sys

import jax
import pytest
from jax.sharding import PartitionSpec as P

from overfeat_jax.errors import InputError
from overfeat_jax.parallel import aot, topology
from overfeat_jax.train import preflight

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


# --- pure logic ---------------------------------------------------------------------------------------------
HLO = """
HloModule jit_train_step
%fused_computation (p: f32[8]) -> f32[8] { ... }
  %all-reduce-start.1 = f32[8]{0} all-reduce-start(f32[8]{0} %fusion.2), replica_groups={{0,1}}, to_apply=%add
  %all-reduce-done.1 = f32[8]{0} all-reduce-done(f32[8]{0} %all-reduce-start.1)
  %all-reduce.7 = f32[] all-reduce(f32[] %x), replica_groups={{0,1}}, to_apply=%add
  %all-gather.2 = f32[16]{0} all-gather(f32[8]{0} %y), dimensions={0}
  %collective-permute-start = (f32[4], f32[4]) collective-permute-start(f32[4] %z), pairs={{0,1}}
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
  error = RuntimeError('RESOURCE_EXHAUSTED: XLA:TPU compile permanent error. Ran out of memory in memory '
                       'space hbm. Used 18.58G of 15.75G hbm. Exceeded hbm capacity by 2.83G.\n\nTotal ...')
  assert aot.is_out_of_memory(error)
  assert aot.oom_line(error).startswith('RESOURCE_EXHAUSTED: XLA:TPU compile permanent error. Ran out of')
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


# --- compile-only slices (libtpu, no compilation) -----------------------------------------------------------
@requires_libtpu
@pytest.mark.parametrize('name,chip_config,devices,chips,hbm_gib', [
    ('v4:2x2x4', 'auto', 16, 16, 32), ('v4:2x2x4', 'default', 32, 16, 16), ('v5e:4x4', 'auto', 16, 16, 16),
    ('v5:2x4x4', 'megacore', 32, 32, 95), ('v5p:2x2x2', 'auto', 8, 8, 95)])
def test_get_slice_counts_devices_chips_and_hbm(name, chip_config, devices, chips, hbm_gib):
  tpu_slice = topology.get_slice(name, chip_config)
  assert (len(tpu_slice.devices), tpu_slice.num_chips) == (devices, chips)
  assert tpu_slice.hbm_per_device == hbm_gib * GIB
  mesh = topology.training_mesh(tpu_slice)
  assert mesh.axis_names == ('data',) and list(mesh.devices.flat) == list(tpu_slice.devices)


@requires_libtpu
def test_multislice_joins_the_slices_on_the_data_axis():
  tpu_slice = topology.get_slice('v5e:2x2', num_slices=2)
  assert len(tpu_slice.devices) == 8 and tpu_slice.num_chips == 8
  assert {d.slice_index for d in tpu_slice.devices} == {0, 1}
  assert topology.training_mesh(tpu_slice).shape == {'data': 8}


@requires_libtpu
@pytest.mark.parametrize('name,chip_config',
                         [('v5e:3x3', 'auto'), ('v9:2x2', 'auto'), ('v5e:4x4', 'megacore')])
def test_libtpu_rejections_become_input_errors(name, chip_config):
  with pytest.raises(InputError, match='libtpu rejected topology'):
    topology.get_slice(name, chip_config)


def test_cli_bad_topology_is_one_line_and_exit_2():
  result = run_cli('--config=experiments/configs/embedded.py', '--topology=v5litepod-16')
  assert result.returncode == 2, result.stderr
  assert result.stderr.strip().count('\n') == 0 and 'GENERATION:AxB' in result.stderr
  assert result.stdout == ''


@requires_libtpu
def test_batches_have_the_pipelines_layout_and_must_split_over_devices():
  config = load_config('embedded', **{'model.width_divisor': 32, 'batch_size': 24})
  mesh = topology.training_mesh(topology.get_slice('v5e:4x4'))
  train, center, multiscale = preflight.trainer_programs(config, mesh)
  assert [p.name for p in (train, center, multiscale)] == ['train', 'eval/center_crop', 'eval/multiscale']
  state, batch = train.abstract_args(32)
  assert {k: (v.shape, str(v.dtype)) for k, v in batch.items()} == {
      'image': ((32, 64, 64, 3), 'uint8'), 'label': ((32,), 'int32'), 'boxes': ((32, 2, 4), 'float32'),
      'box_labels': ((32, 2), 'int32')}
  assert all(x.sharding.spec == P() for x in jax.tree.leaves(state))
  assert all(x.sharding.spec == P('data') for x in batch.values())
  _, eval_batch = multiscale.abstract_args(16)
  assert eval_batch['image'].shape == (16, 72, 72, 3) and eval_batch['mask'].shape == (16,)
  with pytest.raises(InputError, match='does not split over 16 devices'):
    train.abstract_args(24)


# --- compiling the trainer's programs for TPU topologies ----------------------------------------------------
def compile_train(name: str, config, per_device: int):
  """(report, compiled executable, program, slice) of the config's train step at `per_device` examples."""
  tpu_slice = topology.get_slice(name)
  n = len(tpu_slice.devices)
  (program,) = preflight.trainer_programs(config, topology.training_mesh(tpu_slice), include=('train',))
  compiled, seconds = aot.compile_abstract(program.jitted, program.abstract_args(per_device * n))
  return aot.analyze(program, compiled, seconds, per_device * n, n), compiled, program, tpu_slice


def state_bytes(program, global_batch: int) -> int:
  state, _ = program.abstract_args(global_batch)
  return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))


@requires_libtpu
@pytest.mark.tpu_compile
@pytest.mark.slow
@pytest.mark.parametrize('name,network',
                         [('v4:2x2x4', 'fast'), ('v5e:4x4', 'accurate'), ('v5:2x4x4', 'fast')])
def test_train_step_compiles_data_parallel(name, network):
  from overfeat_jax.models.geometry import get_geometry  # pylint: disable=g-import-not-at-top
  config = load_config(f'{network}_imagenet', **{'model.width_divisor': 32})
  per_device = 2
  report, compiled, program, tpu_slice = compile_train(name, config, per_device)
  (state_shardings, batch_shardings), _ = compiled.input_shardings
  assert all(s.is_fully_replicated for s in jax.tree.leaves(state_shardings))  # params, momentum, step, rng
  # The images and labels are split over 'data'; the boxes, unused by classification, are pruned by jit.
  assert {k for k, s in batch_shardings.items() if s is not None} == {'image', 'label'}
  assert all(batch_shardings[k].spec == P('data') and not batch_shardings[k].is_fully_replicated
             for k in ('image', 'label'))
  assert report.argument_shardings == [['P()'], ["P('data',)"]]
  # Pure data parallelism: the gradient all-reduce and nothing else.
  assert set(report.collectives) == {'all-reduce'} and report.unexpected_collectives == []
  # Per device: a whole replica of the state plus its share of the batch, well inside the chip's HBM.
  assert report.memory['argument'] >= state_bytes(program, per_device * len(tpu_slice.devices))
  assert 0 < report.memory['peak'] < tpu_slice.hbm_per_device
  # FLOPs are per device: forward + backward of `per_device` images, not of the global batch.
  geometry = get_geometry(network, 32)
  macs = sum(geometry.multiply_adds(geometry.input_size, geometry.input_size, config.num_classes).values())
  assert 4 * macs * per_device <= report.flops <= 20 * macs * per_device


@requires_libtpu
@pytest.mark.tpu_compile
@pytest.mark.slow
def test_flops_per_device_halve_with_the_per_device_batch():
  config = load_config('embedded', **{'model.width_divisor': 32})
  big, _, _, _ = compile_train('v5e:4x4', config, 16)
  small, _, _, _ = compile_train('v5e:4x4', config, 8)
  assert (big.global_batch, small.global_batch) == (256, 128)
  # Everything but the optimizer update (a few FLOPs per parameter) scales with the batch. Per-device batches
  # are multiples of 8: the TPU program pads smaller batches (4 per device costs 55% of 8, not 50%).
  assert 1.9 <= big.flops / small.flops <= 2.0
  assert big.memory['peak'] >= small.memory['peak']
  assert big.memory['argument'] > small.memory['argument']


@requires_libtpu
@pytest.mark.tpu_compile
def test_dense_multiscale_evaluation_compiles_sharded():
  config = load_config('embedded',
                       **{'model.width_divisor': 32, 'eval.scales': (72, 88), 'eval.batch_size': 32})
  tpu_slice = topology.get_slice('v5e:4x4')
  programs = preflight.trainer_programs(config, topology.training_mesh(tpu_slice), include=('eval',))
  for program in programs:
    report = aot.compile_report(program, program.global_batch, len(tpu_slice.devices))
    assert report.fits and report.per_device_batch == 2
    assert report.argument_shardings == [['P()'], ["P('data',)"]]
    assert report.unexpected_collectives == [] and 'all-gather' in report.collectives  # outputs replicated
    assert report.flops > 0 and 0 < report.memory['peak'] < tpu_slice.hbm_per_device


@requires_libtpu
@pytest.mark.tpu_compile
@pytest.mark.slow
def test_cli_reports_an_oversize_batch_with_the_largest_that_fits():
  # Centre-crop evaluation of 2048-px crops: ~70 MB of activations per example, so 512 per v5e chip (16 GiB)
  # cannot fit; the compiler says so in about a second. Bisection: 256 fails too, 128 fits (~9 GiB).
  result = run_cli('--config=experiments/configs/embedded.py', '--topology=v5e:2x2', '--programs=eval',
                   '--config.model.width_divisor=32', '--config.crop_size=2048',
                   '--config.eval.batch_size=2048',
                   '--config.eval.scales=(72,)', '--max_compiles=2', '--json')
  assert result.returncode == 3, result.stderr[-2000:]
  out = json.loads(result.stdout)
  assert out['fits'] is False and out['num_devices'] == 4
  center, multiscale = out['programs']
  assert multiscale['program'] == 'eval/multiscale' and multiscale['fits']
  assert center['program'] == 'eval/center_crop' and not center['fits'] and center['per_device_batch'] == 512
  assert 'HBM' in center['error'] or 'hbm' in center['error']
  search = center['search']
  assert (search['largest_fitting_per_device'], search['smallest_failing_per_device']) == (128, 256)
  assert search['largest_fitting_global'] == 512 and search['compiles'] == 2 and not search['exact']
  assert 0 < search['fitting_peak_bytes'] < 16 * GIB
  from overfeat_jax.parallel import preflight_report  # pylint: disable=g-import-not-at-top
  text = preflight_report.format_text(out).splitlines()
  assert text[-1] == 'DOES NOT FIT'
  assert 'eval/center_crop: DOES NOT FIT at batch 2048/512' in text[1]
  assert 'largest per-device batch that fits: 128 (global 512)' in text[1]


@requires_libtpu
@pytest.mark.tpu_compile
@pytest.mark.slow
def test_multislice_train_step_splits_the_all_reduce_hierarchically():
  tpu_slice = topology.get_slice('v5e:2x2', num_slices=2)
  config = load_config('embedded', **{'model.width_divisor': 32})
  (program,) = preflight.trainer_programs(config, topology.training_mesh(tpu_slice), include=('train',),
                                          multislice=True)
  report = aot.compile_report(program, 64, len(tpu_slice.devices))
  assert report.fits and report.per_device_batch == 8
  assert report.argument_shardings == [['P()'], ["P('data',)"]]
  assert 'all-reduce' in report.collectives and 'reduce-scatter' in report.collectives
  assert report.unexpected_collectives == []
