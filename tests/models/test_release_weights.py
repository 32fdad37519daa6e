"""The release weight layout: exact sizes, element placement, byte-exact round trips, and size errors."""

import os

import jax
import numpy as np
import pytest

from overfeat_jax.errors import InputError
from overfeat_jax.models import ACCURATE, FAST, SMALL, OverFeat, init_params
from overfeat_jax.models import release_weights as rw

SMALL_NETS = [FAST.scaled(16), ACCURATE.scaled(16), SMALL.scaled(8)]


def _write_random(path, geometry, num_classes, seed=0):
  data = np.random.default_rng(seed).standard_normal(geometry.param_count(num_classes), dtype=np.float32)
  data.astype('<f4').tofile(path)
  return data


def _flax_params(geometry, num_classes, seed=0):
  """Random params with exactly the Flax module's tree and shapes (shapes by `eval_shape`: no slow init)."""
  model = OverFeat(geometry, num_classes=num_classes)
  shapes = jax.eval_shape(lambda: init_params(model, jax.random.key(0)))
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_map(lambda s: rng.standard_normal(s.shape, dtype=np.float32), shapes)


def test_release_file_sizes_match_the_spec():
  assert rw.expected_bytes(FAST) == 583_683_488
  assert rw.expected_bytes(ACCURATE) == 578_625_952


@pytest.mark.parametrize('geometry', SMALL_NETS, ids=lambda g: g.name)
def test_file_round_trip_is_byte_exact(tmp_path, geometry):
  src, dst = tmp_path / 'w0', tmp_path / 'w1'
  _write_random(src, geometry, 10)
  params = rw.load_release_weights(src, geometry, 10)
  assert rw.save_release_weights(params, geometry, dst) == os.path.getsize(src)
  assert src.read_bytes() == dst.read_bytes()
  again = rw.load_release_weights(dst, geometry, 10)
  jax.tree_util.tree_map(np.testing.assert_array_equal, params, again)
  assert sorted(os.listdir(tmp_path)) == ['w0', 'w1']  # no temporary file left behind


@pytest.mark.parametrize('geometry', SMALL_NETS[:2], ids=lambda g: g.name)
def test_flax_params_round_trip(tmp_path, geometry):
  params = _flax_params(geometry, 7)
  rw.save_release_weights(params, geometry, tmp_path / 'w')
  assert os.path.getsize(tmp_path / 'w') == 4 * geometry.param_count(7)
  loaded = rw.load_release_weights(tmp_path / 'w', geometry, 7)
  assert jax.tree_util.tree_structure(loaded) == jax.tree_util.tree_structure(params)
  jax.tree_util.tree_map(np.testing.assert_array_equal, params, loaded)


def test_element_placement_oihw_to_hwio(tmp_path):
  """File element (o, i, y, x) of a layer lands at kernel[y, x, i, o]; the bias follows its weight."""
  geometry, classes = FAST.scaled(16), 5
  data = np.arange(geometry.param_count(classes), dtype=np.float32)  # each value = its file position
  data.tofile(tmp_path / 'w')
  params = rw.load_release_weights(tmp_path / 'w', geometry, classes)
  offset = 0
  for scope, name, (o, i, kh, kw) in rw.release_layers(geometry, classes):
    kernel, bias = params[scope][name]['kernel'], params[scope][name]['bias']
    assert kernel.shape == (kh, kw, i, o) and kernel.dtype == np.float32
    oo, ii, yy, xx = o - 1, i // 2, kh - 1, 0
    assert kernel[yy, xx, ii, oo] == offset + ((oo * i + ii) * kh + yy) * kw + xx
    offset += o * i * kh * kw
    np.testing.assert_array_equal(bias, np.arange(offset, offset + o))
    offset += o
  assert offset == data.size
  names = [name for _, name, _ in rw.release_layers(geometry, classes)]
  assert names == ['conv1', 'conv2', 'conv3', 'conv4', 'conv5', 'fc6', 'fc7', 'fc8']


def test_fully_connected_kernels_are_stored_like_convolutions():
  fast = {name: shape for _, name, shape in rw.release_layers(FAST, 1000)}
  accurate = {name: shape for _, name, shape in rw.release_layers(ACCURATE, 1000)}
  assert fast['fc6'] == (3072, 1024, 6, 6) and fast['fc7'] == (4096, 3072, 1, 1) and fast['fc8'] == (1000, 4096, 1, 1)
  assert accurate['fc7'] == (4096, 1024, 5, 5) and accurate['fc9'] == (1000, 4096, 1, 1)


def test_wrong_size_is_an_input_error_naming_the_expected_size(tmp_path):
  geometry = FAST.scaled(16)
  data = _write_random(tmp_path / 'w', geometry, 10)
  with open(tmp_path / 'w', 'r+b') as f:
    f.truncate(4 * (data.size - 1))
  with pytest.raises(InputError, match=f'{4 * data.size:,} bytes'):
    rw.load_release_weights(tmp_path / 'w', geometry, 10)
  with pytest.raises(InputError, match='does not exist'):
    rw.load_release_weights(tmp_path / 'missing', geometry, 10)


def _sparse(path, size):
  with open(path, 'wb') as f:
    f.truncate(size)  # a hole: the right size without writing 584 MB


def test_full_size_files_are_recognised_by_size(tmp_path):
  _sparse(tmp_path / 'net_weight_0', 583_683_488)
  _sparse(tmp_path / 'net_weight_1', 578_625_952)
  rw.check_file_size(tmp_path / 'net_weight_0', FAST)
  rw.check_file_size(tmp_path / 'net_weight_1', ACCURATE)
  with pytest.raises(InputError, match=r"looks like the fast network's file \(net_weight_0\)"):
    rw.check_file_size(tmp_path / 'net_weight_0', ACCURATE)
  with pytest.raises(InputError, match=r"needs 583,683,488 bytes; this looks like the accurate network.s file \(net_weight_1\)"):
    rw.load_release_weights(tmp_path / 'net_weight_1', FAST)
  arrays = rw.read_release_arrays(tmp_path / 'net_weight_0', FAST)  # memory-mapped: nothing is read
  assert arrays['classifier']['fc6']['kernel'].shape == (3072, 1024, 6, 6)
  assert arrays['classifier']['fc8']['bias'].shape == (1000,)


def test_save_refuses_params_of_another_network(tmp_path):
  params = _flax_params(FAST.scaled(16), 4)
  with pytest.raises(InputError, match='do not match'):
    rw.save_release_weights(params, FAST.scaled(8), tmp_path / 'w')
  assert os.listdir(tmp_path) == []  # neither the file nor a temporary one


def test_random_params_have_the_flax_tree_and_the_papers_scale():
  geometry = FAST.scaled(16)
  params = rw.random_params(geometry, 10, seed=3)
  shapes = jax.eval_shape(lambda: init_params(OverFeat(geometry, num_classes=10), jax.random.key(0)))
  assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(shapes)
  jax.tree_util.tree_map(lambda p, s: (p.shape, p.dtype) == (s.shape, s.dtype) or pytest.fail(str(s)), params, shapes)
  assert abs(float(params['classifier']['fc6']['kernel'].std()) - 0.01) < 5e-4
  jax.tree_util.tree_map(np.testing.assert_array_equal, params, rw.random_params(geometry, 10, seed=3))
