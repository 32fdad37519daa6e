"""The data-parallel mesh: every device on 'data', global batches from host slices."""

import jax
import numpy as np
import pytest

from overfeat_jax.errors import InputError
from overfeat_jax.parallel import mesh as mesh_lib


def test_mesh_over_all_devices():
  mesh = mesh_lib.make_mesh()
  assert mesh.axis_names == ('data',) and mesh.devices.size == jax.device_count() == 8


def test_to_global_splits_the_batch_and_keeps_values():
  mesh = mesh_lib.make_mesh()
  batch = {'image': np.arange(16 * 3, dtype=np.float32).reshape(16, 3), 'label': np.arange(16)}
  out = mesh_lib.to_global(batch, mesh_lib.batch_sharding(mesh))
  assert out['image'].shape == (16, 3)
  assert len(out['image'].addressable_shards) == 8
  assert out['image'].addressable_shards[1].data.shape == (2, 3)
  np.testing.assert_array_equal(np.asarray(out['label']), batch['label'])


def test_local_batch_size():
  mesh = mesh_lib.make_mesh()
  assert mesh_lib.local_batch_size(64, mesh) == 64  # one process holds every device
  with pytest.raises(InputError, match='does not split'):
    mesh_lib.local_batch_size(12, mesh)
