"""Localization inference on a synthetic case: every window's box points at one known box."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from overfeat_jax.inference import localize
from overfeat_jax.models.geometry import get_geometry
from tests.inference._fake_models import FakeClassifier, FakeRegressor, TARGET

G = get_geometry('small', 16)
PARAMS = {'backbone': {}, 'regressor': {}}
SCALES = ((64, 64), (80, 96), (112, 112))


def box_model(logits=(0.0, 3.0, 1.0)):
  return localize.BoxModel(FakeClassifier(G, logits), FakeRegressor(G))


@pytest.mark.parametrize('fine', [True, False])
def test_decoded_boxes_hit_the_target_at_every_window_and_scale(fine):
  images = jnp.zeros((2, 72, 72, 3))
  for size in SCALES:
    c = localize.scale_candidates(box_model(), PARAMS, images, size, top_k=2, fine=fine)
    rows, cols = G.output_size(size[0], fine), G.output_size(size[1], fine)
    assert c.boxes.shape == (2, rows * cols * 2, 4)
    np.testing.assert_allclose(np.asarray(c.boxes), np.broadcast_to(TARGET, c.boxes.shape), atol=1e-4)
    assert set(np.unique(np.asarray(c.classes))) == {1, 2}  # the top-2 classes


@pytest.mark.parametrize('method,threshold', [('overlap', 0.5), ('literal', 1e9), ('nms', 0.5)])
def test_merged_result_is_the_target(method, threshold):
  fn = localize.make_localizer(box_model(), scales=SCALES, top_k=2, method=method, threshold=threshold)
  out = jax.tree.map(np.asarray, fn(PARAMS, jnp.zeros((1, 72, 72, 3))))
  assert out['classes'][0, 0] == 1 and out['classes'][0, 1] == 2
  np.testing.assert_allclose(out['boxes'][0, :2], np.stack([TARGET, TARGET]), atol=1e-3)
  probs = np.asarray(jax.nn.softmax(jnp.asarray([0.0, 3.0, 1.0])))
  windows = sum(G.output_size(h, True) * G.output_size(w, True) for h, w in SCALES)
  if method == 'nms':  # one kept box per class, its own window's score
    np.testing.assert_allclose(out['scores'][0, :2], probs[[1, 2]], rtol=1e-5)
    assert (out['classes'][0, 2:] == -1).all()
  else:  # every window of a class merged into one box whose score is the sum of their outputs
    np.testing.assert_allclose(out['scores'][0, :2], windows * probs[[1, 2]], rtol=1e-4)
    assert (out['classes'][0, 2:] == -1).all()


def test_unknown_merge_method():
  from overfeat_jax.errors import InputError
  with pytest.raises(InputError):
    localize.localize(box_model(), PARAMS, jnp.zeros((1, 72, 72, 3)), scales=SCALES, method='mean')


@pytest.mark.parametrize('size', [72, 88, 104, 120])
def test_dense_outputs_keep_only_real_windows_at_demo_scales(size):
  """Sizes whose layer-5 map is not a multiple of the pooling: the padded offsets' cells are trimmed, so the
  map has `output_size` cells per axis and every remaining cell decodes to the target (no padding windows)."""
  g = get_geometry('small', 8)
  model = localize.BoxModel(FakeClassifier(g, (0.0, 3.0, 1.0)), FakeRegressor(g))
  logits, deltas = localize.dense_outputs(model, PARAMS, jnp.zeros((1, size, size, 3)), fine=True)
  n = g.output_size(size, True)
  assert logits.shape == (1, n, n, 3) and deltas.shape == (1, n, n, 1, 4)
  boxes = localize.decode_dense(g, deltas, (size, size), (72, 72), True)
  np.testing.assert_allclose(np.asarray(boxes), np.broadcast_to(TARGET, boxes.shape), atol=1e-4)
  c = localize.scale_candidates(model, PARAMS, jnp.zeros((2, 72, 72, 3)), (size, size), top_k=2, fine=True)
  assert c.boxes.shape == (2, n * n * 2, 4)


def test_merge_candidates_applies_the_average_per_image():
  # Two images of 6 candidates in 2 classes (one invalid), merged with t = 1e9: each image's result must be
  # the sequential reference's for that image, and 'pair' and 'score' must give different boxes.
  from tests.inference.merge_reference import merge_boxes_reference
  rng = np.random.default_rng(5)
  xy = rng.uniform(0, 20, (2, 6, 2))
  boxes = np.concatenate([xy, xy + 30], -1).astype(np.float32)
  scores = rng.uniform(0.1, 1, (2, 6)).astype(np.float32)
  classes = np.array([[0, 0, 0, 1, 1, 1]] * 2, np.int32)
  valid = np.ones((2, 6), bool)
  valid[1, 4] = False
  c = localize.Candidates(*map(jnp.asarray, (boxes, scores, classes, valid)))
  merged = {}
  for average in ('pair', 'score'):
    got = localize.merge_candidates(c, method='overlap', threshold=1e9, average=average)
    for i in range(2):
      ref = merge_boxes_reference(boxes[i], scores[i], classes[i], valid[i], threshold=1e9, average=average)
      np.testing.assert_array_equal(np.asarray(got.valid[i]), ref.valid)
      np.testing.assert_array_equal(np.asarray(got.boxes[i]), ref.boxes)
      np.testing.assert_array_equal(np.asarray(got.scores[i]), ref.scores)
    merged[average] = np.asarray(got.boxes)[np.asarray(got.valid)]
  assert np.abs(merged['pair'] - merged['score']).max() > 0.5


def test_localize_score_average_is_the_confidence_weighted_mean_of_every_window():
  # Windows point at boxes spread over ~10 px; with t = 1e9 each class merges into one box. 'score' must give
  # the probability-weighted mean of all candidate boxes of the class, whatever the merge order; 'pair' not.
  model = localize.BoxModel(FakeClassifier(G, (0.0, 3.0, 1.0)), FakeRegressor(G, spread=0.25))
  images = jnp.zeros((1, 72, 72, 3))
  c = localize.concat([localize.scale_candidates(model, PARAMS, images, size, top_k=2, fine=True)
                       for size in SCALES])
  b, s, k = (np.asarray(v[0], np.float64) for v in c[:3])
  out = {}
  for average in ('pair', 'score'):
    fn = localize.make_localizer(model, scales=SCALES, top_k=2, method='overlap', threshold=1e9,
                                 average=average)
    out[average] = jax.tree.map(np.asarray, fn(PARAMS, images))
  for g, cls in enumerate(out['score']['classes'][0, :2]):
    m = k == cls
    want = (s[m, None] * b[m]).sum(0) / s[m].sum()
    np.testing.assert_allclose(out['score']['boxes'][0, g], want, atol=2e-3)
    assert np.abs(out['pair']['boxes'][0, g] - want).max() > 0.1
  assert np.ptp(b[:, 0]) > 5  # the windows' boxes really differ


def test_unknown_merge_average():
  from overfeat_jax.errors import InputError
  with pytest.raises(InputError, match='average'):
    localize.localize(box_model(), PARAMS, jnp.zeros((1, 72, 72, 3)), scales=SCALES, average='median')
