"""The architecture pinned to the paper: parameter counts, multiply-adds, every layer's size, Table 5's maps."""

import jax
import pytest

from overfeat_jax.models import ACCURATE, FAST, SMALL, OverFeat, get_geometry, init_params

# Spec section 1: (name, channels, spatial size) for every layer of the release's numbering.
FAST_LAYERS_231 = [
    ('input', 3, 231), ('conv1', 96, 56), ('relu1', 96, 56), ('pool1', 96, 28), ('conv2', 256, 24),
    ('relu2', 256, 24), ('pool2', 256, 12), ('pad3', 256, 14), ('conv3', 512, 12), ('relu3', 512, 12),
    ('pad4', 512, 14), ('conv4', 1024, 12), ('relu4', 1024, 12), ('pad5', 1024, 14), ('conv5', 1024, 12),
    ('relu5', 1024, 12), ('pool5', 1024, 6), ('fc6', 3072, 1), ('relu6', 3072, 1), ('fc7', 4096, 1),
    ('relu7', 4096, 1), ('fc8', 1000, 1), ('softmax', 1000, 1)]
ACCURATE_LAYERS_221 = [
    ('input', 3, 221), ('conv1', 96, 108), ('relu1', 96, 108), ('pool1', 96, 36), ('conv2', 256, 30),
    ('relu2', 256, 30), ('pool2', 256, 15), ('pad3', 256, 17), ('conv3', 512, 15), ('relu3', 512, 15),
    ('pad4', 512, 17), ('conv4', 512, 15), ('relu4', 512, 15), ('pad5', 512, 17), ('conv5', 1024, 15),
    ('relu5', 1024, 15), ('pad6', 1024, 17), ('conv6', 1024, 15), ('relu6', 1024, 15), ('pool6', 1024, 5),
    ('fc7', 4096, 1), ('relu7', 4096, 1), ('fc8', 4096, 1), ('relu8', 4096, 1), ('fc9', 1000, 1),
    ('softmax', 1000, 1)]


def test_parameter_counts_match_the_paper():
  assert FAST.param_count(1000) == 145_920_872
  assert ACCURATE.param_count(1000) == 144_656_488


@pytest.mark.parametrize('geometry', [FAST.scaled(16), ACCURATE.scaled(16), SMALL.scaled(8)])
def test_flax_parameters_equal_the_geometry_count(geometry):
  params = jax.eval_shape(lambda: init_params(OverFeat(geometry, num_classes=7), jax.random.key(0)))
  assert sum(p.size for p in jax.tree.leaves(params)) == geometry.param_count(7)


def test_full_size_flax_parameter_count_without_allocating():
  for geometry, expected in [(FAST, 145_920_872), (ACCURATE, 144_656_488)]:
    params = jax.eval_shape(lambda g=geometry: init_params(OverFeat(g), jax.random.key(0)))
    assert sum(p.size for p in jax.tree.leaves(params)) == expected


def test_multiply_adds_within_one_percent_of_the_spec():
  fast = FAST.multiply_adds(231, 231, 1000)
  assert sum(fast.values()) == pytest.approx(2.80e9, rel=0.01)
  # the spec quotes per-layer figures to two decimals
  assert fast['conv5'] == pytest.approx(1.36e9, abs=0.005e9)
  assert fast['conv4'] == pytest.approx(0.68e9, abs=0.005e9)
  assert fast['conv2'] == pytest.approx(0.35e9, abs=0.005e9)
  assert sum(ACCURATE.multiply_adds(221, 221, 1000).values()) == pytest.approx(5.36e9, rel=0.01)


@pytest.mark.parametrize('geometry, size, expected', [
    (FAST, 231, FAST_LAYERS_231), (ACCURATE, 221, ACCURATE_LAYERS_221)])
def test_every_layer_size_and_release_numbering(geometry, size, expected):
  assert geometry.layer_sizes(size, 1000) == expected
  names = geometry.layer_names()
  assert names == [n for n, _, _ in expected]


def test_release_default_feature_layers():
  assert FAST.layer_names()[19] == 'fc7'  # spec: fast default -L 19 = conv7 before its ReLU
  assert ACCURATE.layer_names()[22] == 'fc8'  # accurate default -L 22


def test_strides():
  assert (FAST.coarse_stride, FAST.fine_stride, FAST.offset_pool) == (32, 16, 2)
  assert (ACCURATE.coarse_stride, ACCURATE.fine_stride, ACCURATE.offset_pool) == (36, 12, 3)


# Paper Table 5 with the spec's arithmetic correction for scale 5: (input size, per-offset map, interleaved map).
TABLE5 = [((245, 245), (1, 1), (3, 3)), ((281, 317), (2, 3), (6, 9)), ((317, 389), (3, 5), (9, 15)),
          ((389, 461), (5, 7), (15, 21)), ((425, 497), (6, 8), (18, 24)), ((461, 569), (7, 10), (21, 30))]
TABLE5_GMACS = [6.8, 11.4, 17.3, 27.9, 34.1, 44.4]


@pytest.mark.parametrize('row, gmacs', list(zip(TABLE5, TABLE5_GMACS)))
def test_accurate_six_scales_match_table5(row, gmacs):
  (h, w), per_offset, interleaved = row
  assert (ACCURATE.output_size(h), ACCURATE.output_size(w)) == per_offset
  assert (ACCURATE.output_size(h, fine=True), ACCURATE.output_size(w, fine=True)) == interleaved
  assert sum(ACCURATE.multiply_adds(h, w, 1000).values()) / 1e9 == pytest.approx(gmacs, abs=0.06)


def test_small_geometry_layout_and_errors():
  assert SMALL.fc_kernel == 2 and SMALL.coarse_stride == 16 and SMALL.fine_stride == 8
  assert SMALL.output_size(64) == 1 and SMALL.min_input_size() <= 64
  # spec section 2: the accurate network's output is 1x1 for inputs 221..231 (the release classifies at 231)
  assert ACCURATE.min_input_size() <= 221 and ACCURATE.output_size(231) == 1 and ACCURATE.output_size(232) == 1
  assert get_geometry('small', 8).stages[0].features == 12
  with pytest.raises(ValueError, match='unknown network'):
    get_geometry('huge')
  # One check for every reader (a config, an artifact's config.json, classify): 0 divided by zero, -1 and
  # True built 1-channel layers (field case), 2.0 is not a width divisor.
  for bad in (0, -1, True, 2.0, '8'):
    with pytest.raises(ValueError, match=f'width_divisor must be a positive integer .*got {bad!r}'):
      get_geometry('small', bad)
  with pytest.raises(ValueError, match='collapses'):
    FAST.scaled(1, name='x').__class__(name='tiny', input_size=40, stages=FAST.stages, hidden=FAST.hidden)
