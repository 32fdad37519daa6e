r"""Largest per-chip training batch of the paper-size networks on TPU slices, found by AOT compilation.

For each (topology, network, dtype): the real train step of `experiments/configs/<network>_imagenet.py`
is compiled for the topology's compile-only devices (`overfeat_jax.parallel.aot`), first at `--upper`
examples per chip (expected not to fit), then by bisection (at most `--max_compiles` more compiles). Each
finished cell is appended as one JSON line to `--out` at once, so a long run can be watched and resumed
(cells already in the file are skipped); `--table` prints the markdown table of a results file.

  nohup python experiments/benchmarks/tpu_preflight.py --out=/tmp/tpu_preflight.jsonl \
      > /tmp/tpu_preflight.log 2>&1 &
  python experiments/benchmarks/tpu_preflight.py --out=/tmp/tpu_preflight.jsonl --table

Cost: an out-of-memory compile is rejected in seconds, a compile that fits takes about a minute of 2 CPU
cores (more for large batches), so a cell costs a few minutes. The per-chip answer depends on the chip (HBM)
and barely on the slice size (data parallelism replicates the state; only the all-reduce grows), so the
default grid has one 16-chip slice per generation; add larger slices with `--topologies`.
"""

import json
import os
import time

os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import importlib.util  # pylint: disable=g-import-not-at-top,wrong-import-position

from absl import app, flags

from overfeat_jax.parallel import aot, topology
from overfeat_jax.train import preflight

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_TOPOLOGIES = flags.DEFINE_list('topologies', ['v5e:4x4', 'v4:2x2x4', 'v5p:2x2x4'], 'Slices to compile for.')
_NETWORKS = flags.DEFINE_list('networks', ['fast', 'accurate'], 'Configs <network>_imagenet.py.')
_DTYPES = flags.DEFINE_list('dtypes', ['float32', 'bfloat16'], 'Compute dtypes.')
_UPPER = flags.DEFINE_integer('upper', 0, 'Per-chip batch to start from (0: 256 (float32) or 512 '
                             '(bfloat16) per GiB of HBM).')
_MAX_COMPILES = flags.DEFINE_integer('max_compiles', 5, 'Bisection compiles per cell after the first.')
_OUT = flags.DEFINE_string('out', '/tmp/tpu_preflight.jsonl', 'JSON lines, one per finished cell.')
_TABLE = flags.DEFINE_bool('table', False, 'Print the markdown table of --out and exit.')


def load_config(network: str, dtype: str):
  path = os.path.join(REPO, 'experiments', 'configs', f'{network}_imagenet.py')
  spec = importlib.util.spec_from_file_location(f'bench_{network}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.dtype = dtype
  return config


def run_cell(name: str, network: str, dtype: str) -> dict:
  """One cell: the train step at the upper bound, then the fit search; the facts of the largest that fits."""
  tpu_slice = topology.get_slice(name)
  n = len(tpu_slice.devices)
  (program,) = preflight.trainer_programs(load_config(network, dtype), topology.training_mesh(tpu_slice),
                                          include=('train',))
  per_gib = 512 if dtype == 'bfloat16' else 256  # activations take half the bytes in bfloat16
  upper = _UPPER.value or per_gib * tpu_slice.hbm_per_device // topology.GIB
  start = time.perf_counter()
  report, search = aot.check_program(program, n, _MAX_COMPILES.value, global_batch=upper * n)
  cell = {'topology': name, 'device_kind': tpu_slice.device_kind, 'chips': tpu_slice.num_chips,
          'devices': n, 'hbm_per_device': tpu_slice.hbm_per_device, 'network': network, 'dtype': dtype,
          'upper': upper, 'seconds': time.perf_counter() - start}
  if search is None:  # the upper bound fits: report it as a lower bound
    fitting = report
    cell.update(largest=upper, smallest_failing=None, compiles=1, exact=False)
  else:
    fitting = search.fitting_report
    cell.update(largest=search.largest_fitting, smallest_failing=search.smallest_failing,
                compiles=search.compiles + 1, exact=search.exact, oom=report.error)
  if fitting is not None:
    cell.update(peak=fitting.memory['peak'], flops=fitting.flops, compile_seconds=fitting.compile_seconds,
                collectives=fitting.collectives)
  return cell


def done_cells(path: str) -> set[tuple[str, str, str]]:
  if not os.path.exists(path):
    return set()
  with open(path) as f:
    return {(c['topology'], c['network'], c['dtype']) for c in map(json.loads, f) if c}


def table(path: str) -> str:
  """Markdown table of the cells in `path`."""
  rows = ['| topology | chip | network | dtype | largest batch/chip | first failing | peak at largest | '
          'GFLOP/chip/step at largest | compile s (fitting) | compiles | cell s |',
          '|---|---|---|---|---|---|---|---|---|---|---|']
  with open(path) as f:
    for c in map(json.loads, f):
      peak = f"{c['peak'] / topology.GIB:.2f} GiB" if c.get('peak') else '-'
      flops = f"{c['flops'] / 1e9:.1f}" if c.get('flops') else '-'
      largest = f"{c['largest']}" + ('' if c['exact'] else ' (bracket)')
      rows.append(f"| {c['topology']} | {c['device_kind']} | {c['network']} | {c['dtype']} | {largest} | "
                  f"{c['smallest_failing'] or '-'} | {peak} | {flops} | {c.get('compile_seconds', 0):.0f} | "
                  f"{c['compiles']} | {c['seconds']:.0f} |")
  return '\n'.join(rows)


def main(argv):
  del argv
  if _TABLE.value:
    print(table(_OUT.value))
    return
  done = done_cells(_OUT.value)
  for name in _TOPOLOGIES.value:
    for network in _NETWORKS.value:
      for dtype in _DTYPES.value:
        if (name, network, dtype) in done:
          continue
        cell = run_cell(name, network, dtype)
        print(json.dumps(cell), flush=True)
        with open(_OUT.value, 'a') as f:
          f.write(json.dumps(cell) + '\n')


if __name__ == '__main__':
  app.run(main)
