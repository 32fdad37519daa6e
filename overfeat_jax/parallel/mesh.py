"""The data-parallel device mesh and its shardings: batches split on 'data', parameters replicated.

One mesh over every device of every process, one axis. The global batch is built from each process's local
slice with `jax.make_array_from_process_local_data`, so the same code runs on 1 CPU device, 8 simulated ones,
and many hosts.
"""

from typing import Any, Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = 'data'


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh named 'data' over `devices` (default: all global devices)."""
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over 'data'; other axes whole."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """A full copy on every device (parameters, optimizer state, metrics)."""
  return NamedSharding(mesh, P())


def local_batch_size(global_batch_size: int, mesh: Mesh) -> int:
  """This process's share of the global batch; the global batch must split evenly over the devices."""
  devices = mesh.devices.size
  if global_batch_size % devices:
    from overfeat_jax.errors import InputError  # pylint: disable=g-import-not-at-top
    raise InputError(f'batch size {global_batch_size} does not split over {devices} devices; use a multiple.')
  local_devices = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)
  return global_batch_size // devices * local_devices


def to_global(batch: Mapping[str, Any], sharding: NamedSharding) -> dict[str, jax.Array]:
  """Host-local numpy arrays (this process's rows) -> global jax arrays sharded on the batch axis."""
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()}
