"""Compile-only TPU devices for a named topology: a pod's programs compiled on a machine without TPUs.

libtpu (the `tpu` extra) describes any slice from its name alone: `jax.experimental.topologies` returns
devices that XLA can compile for (real TPU executables with their memory and cost analysis) but never run on.
The mesh over them is the trainer's own (`parallel.mesh.make_mesh`), so what compiles here is what a pod run
compiles.

Topology names are libtpu's `<generation>:<chips>` form, e.g. `v4:2x2x4`, `v5e:4x8`, `v5p:2x4x4` (`v5:` also
means v5p), `v6e:8x8`; Cloud's accelerator names (`v5litepod-16`) are not topology names.
"""

import contextlib
import dataclasses
import os
import re
import sys
from typing import Iterator, Sequence

import jax
from jax.sharding import Mesh

from overfeat_jax.errors import InputError
from overfeat_jax.parallel import mesh as mesh_lib

GIB = 1024 ** 3
# HBM per chip, from Google's published specifications (device attributes of compile-only devices carry none).
HBM_PER_CHIP = {'TPU v4': 32 * GIB, 'TPU v5 lite': 16 * GIB, 'TPU v5': 95 * GIB, 'TPU v6 lite': 32 * GIB}
# Generations whose chips have two TensorCores: 'megacore' makes them one device per chip (how pods run them).
MEGACORE_GENERATIONS = ('v4', 'v5p', 'v5')
CHIP_CONFIGS = ('auto', 'default', 'megacore')
_NAME = re.compile(r'^(v\d+[a-z]*):(\d+(?:x\d+){1,2})$')


@dataclasses.dataclass(frozen=True)
class Slice:
  """The compile-only devices of a topology, and what is known about their chips."""
  name: str
  chip_config: str
  num_slices: int
  devices: tuple[jax.Device, ...]
  device_kind: str
  cores_per_device: int  # TensorCores behind one device: 2 with megacore on v4/v5p, else 1
  devices_per_chip: int  # 2 on v4/v5p without megacore (one device per core), else 1

  @property
  def num_chips(self) -> int:
    return len(self.devices) // self.devices_per_chip

  @property
  def hbm_per_device(self) -> int | None:
    """Bytes of HBM one device owns (a chip's HBM, split between its devices); None for an unknown chip."""
    chip = HBM_PER_CHIP.get(self.device_kind)
    return None if chip is None else chip // self.devices_per_chip


def libtpu_available() -> bool:
  """True when libtpu (`pip install 'overfeat_jax[tpu]'`) can be imported."""
  try:
    import libtpu  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    return False
  return True


def parse_name(name: str) -> tuple[str, tuple[int, ...]]:
  """'v5e:4x8' -> ('v5e', (4, 8)); raises InputError for anything else, naming the expected form."""
  match = _NAME.match(name.strip())
  if not match:
    raise InputError(f'topology {name!r} is not of the form GENERATION:AxB[xC], e.g. v5e:4x8, v4:2x2x4 or '
                     f'v5p:2x4x4 (Cloud accelerator names such as v5litepod-16 are not topology names).')
  return match.group(1), tuple(int(v) for v in match.group(2).split('x'))


def resolve_chip_config(generation: str, chip_config: str) -> str:
  """'auto' -> 'megacore' on v4/v5p (one device per chip, as pods run them), 'default' elsewhere."""
  if chip_config not in CHIP_CONFIGS:
    raise InputError(f'chip_config {chip_config!r} is not one of {CHIP_CONFIGS}.')
  if chip_config != 'auto':
    return chip_config
  return 'megacore' if generation in MEGACORE_GENERATIONS else 'default'


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
  """Drops what libtpu writes to fd 2 while it starts: warnings that this is not a TPU VM, which it is not."""
  sys.stderr.flush()
  saved = os.dup(2)
  with open(os.devnull, 'wb') as null:
    os.dup2(null.fileno(), 2)
    try:
      yield
    finally:
      os.dup2(saved, 2)
      os.close(saved)


def _prepare_environment() -> None:
  """Environment libtpu reads when it loads: several processes may load it (tests, benchmarks, the launcher's
  dry run), and there is no metadata server to ask about a TPU VM."""
  os.environ.setdefault('ALLOW_MULTIPLE_LIBTPU_LOAD', '1')
  os.environ.setdefault('TPU_SKIP_MDS_QUERY', '1')


def get_slice(name: str, chip_config: str = 'auto', num_slices: int = 1) -> Slice:
  """The compile-only devices of `num_slices` slices of topology `name` (InputError on a bad name)."""
  generation, _ = parse_name(name)
  if num_slices < 1:
    raise InputError(f'num_slices must be at least 1, got {num_slices}.')
  if not libtpu_available():
    raise InputError("libtpu is not installed; install the TPU extra: pip install 'overfeat_jax[tpu]'.")
  config = resolve_chip_config(generation, chip_config)
  _prepare_environment()
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
  kwargs = {'chip_config_name': config} if config != 'default' else {}
  if num_slices > 1:
    kwargs['num_slices'] = num_slices
  with _quiet_stderr():
    try:
      topology = topologies.get_topology_desc(name.strip(), 'tpu', **kwargs)
    except jax.errors.JaxRuntimeError as e:
      first = str(e).strip().splitlines()[0]
      raise InputError(f'libtpu rejected topology {name!r} (chip_config {config}): {first}') from None
  return describe(name, config, num_slices, topology.devices)


def describe(name: str, chip_config: str, num_slices: int, devices: Sequence[jax.Device]) -> Slice:
  """A `Slice` for devices: how many devices share a chip (same slice and coordinates) and their kind."""
  chips = {(getattr(d, 'slice_index', 0), tuple(d.coords)) for d in devices}
  per_chip = len(devices) // len(chips)
  cores = 2 if (chip_config == 'megacore') else 1
  return Slice(name=name, chip_config=chip_config, num_slices=num_slices, devices=tuple(devices),
               device_kind=devices[0].device_kind, cores_per_device=cores, devices_per_chip=per_chip)


def training_mesh(tpu_slice: Slice) -> Mesh:
  """The trainer's data-parallel mesh over the slice's devices, exactly as a run on the pod builds it."""
  return mesh_lib.make_mesh(tpu_slice.devices)

