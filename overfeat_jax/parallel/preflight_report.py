"""What the pre-flight computes and how it prints it: the library half of `python -m overfeat_jax.preflight`.

Kept apart from the command's flags so that other code (and tests) can run a pre-flight and format its result
without defining the command's absl flags.
"""

import dataclasses
import importlib.metadata
from typing import Any

import jax

from overfeat_jax.parallel import aot, topology


def versions() -> dict[str, str]:
  out = {'jax': jax.__version__}
  for name in ('jaxlib', 'libtpu'):
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = 'not installed'
  return out


def run_preflight(config: Any, tpu_slice: topology.Slice, *, stage: str | None = None,
                  programs: tuple[str, ...] = ('train', 'eval'), max_compiles: int = 8) -> dict[str, Any]:
  """Compiles every requested program of `config` on the slice's training mesh; the result as plain data."""
  mesh = topology.training_mesh(tpu_slice)
  n = len(tpu_slice.devices)
  results = []
  for program in aot.trainer_programs(config, mesh, stage=stage, include=programs,
                                      multislice=tpu_slice.num_slices > 1):
    report, search = aot.check_program(program, n, max_compiles)
    entry = dataclasses.asdict(report)
    if search is not None:
      entry['search'] = {
          'largest_fitting_per_device': search.largest_fitting,
          'largest_fitting_global': search.largest_fitting * n,
          'smallest_failing_per_device': search.smallest_failing, 'compiles': search.compiles,
          'exact': search.exact,
          'fitting_peak_bytes': search.fitting_report.memory.get('peak') if search.fitting_report else None}
    results.append(entry)
  return {'topology': tpu_slice.name, 'chip_config': tpu_slice.chip_config,
          'num_slices': tpu_slice.num_slices,
          'device_kind': tpu_slice.device_kind, 'num_devices': n, 'num_chips': tpu_slice.num_chips,
          'hbm_per_device_bytes': tpu_slice.hbm_per_device, 'stage': stage or config.stages[0],
          'fits': all(r['fits'] for r in results), 'programs': results, 'versions': versions()}


def _gib(value: float | None) -> str:
  """Bytes in GiB, or MiB below 1 GiB (small test networks)."""
  if value is None:
    return '-'
  return f'{value / topology.GIB:.2f} GiB' if value >= topology.GIB else f'{value / 2 ** 20:.1f} MiB'


def program_line(entry: dict[str, Any], hbm: int | None) -> str:
  """One line per program: batch, compile time, per-device memory vs HBM, FLOPs and collectives."""
  batch = f"{entry['global_batch']}/{entry['per_device_batch']}"
  if not entry['fits']:
    s = entry['search']
    answer = (f"largest per-device batch that fits: {s['largest_fitting_per_device']} "
              f"(global {s['largest_fitting_global']})" if s['largest_fitting_per_device'] else
              'it does not fit even at 1 example per device')
    bracket = '' if s['exact'] else (f" (search stopped after {s['compiles']} compiles; "
                                     f"{s['smallest_failing_per_device']} does not fit)")
    return (f"{entry['program']}: DOES NOT FIT at batch {batch} (global/device): {entry['error']}; "
            f"{answer}{bracket}")
  mem = entry['memory']
  share = f" = {100 * mem['peak'] / hbm:.1f}% of {_gib(hbm)}" if hbm else ''
  flops = '-' if entry['flops'] is None else f"{entry['flops'] / 1e9:.4g}"
  collectives = ', '.join(f'{k} x{v}' for k, v in entry['collectives'].items()) or 'none'
  unexpected = entry['unexpected_collectives']
  flag = f" UNEXPECTED: {', '.join(unexpected)}" if unexpected else ''
  return (f"{entry['program']}: batch {batch} (global/device) | compile {entry['compile_seconds']:.1f} s | "
          f"argument {_gib(mem['argument'])}, output {_gib(mem['output'])}, temp {_gib(mem['temp'])}, "
          f"peak {_gib(mem['peak'])}{share} | {flops} GFLOP/device/step | collectives: {collectives}{flag}")


def format_text(result: dict[str, Any]) -> str:
  head = (f"{result['topology']} ({result['chip_config']}, {result['num_slices']} slice(s)): "
          f"{result['num_devices']} devices on {result['num_chips']} chips, {result['device_kind']}, "
          f"{_gib(result['hbm_per_device_bytes'])} HBM per device; stage {result['stage']}")
  lines = [head] + [program_line(e, result['hbm_per_device_bytes']) for e in result['programs']]
  lines.append('fits' if result['fits'] else 'DOES NOT FIT')
  return '\n'.join(lines)
