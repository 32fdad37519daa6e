"""How a pre-flight result (`train.preflight.run_preflight`, plain data) prints, and the versions it records.

Kept apart from the command's flags so that other code (and tests) can format a result without defining the
command's absl flags.
"""

import importlib.metadata
from typing import Any

import jax

from overfeat_jax.parallel import topology


def versions() -> dict[str, str]:
  out = {'jax': jax.__version__}
  for name in ('jaxlib', 'libtpu'):
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = 'not installed'
  return out


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
