"""Detection inference on a synthetic case: thresholded classes, merged boxes, background and empty boxes never
reported."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from overfeat_jax.inference import detect, localize
from overfeat_jax.models.geometry import Geometry, get_geometry
from tests.inference._fake_models import FakeClassifier, FakeRegressor, TARGET

G = get_geometry('small', 16)
PARAMS = {'backbone': {}, 'regressor': {}}
SCALES = ((64, 64), (96, 96))


def run(logits, **options):
  model = localize.BoxModel(FakeClassifier(G, logits), FakeRegressor(G))
  fn = detect.make_detector(model, scales=SCALES, max_per_scale=64, max_detections=6, **options)
  return jax.tree.map(np.asarray, fn(PARAMS, jnp.zeros((2, 72, 72, 3))))


def test_one_object_class_above_threshold_gives_one_merged_box():
  # Classes 0, 1, 2 and background (3): only class 1's probability (~0.84) exceeds 0.5.
  out = run((0.0, 3.0, 1.0, 0.5), score_threshold=0.5, method='overlap', threshold=0.5)
  assert out['valid'].sum(axis=1).tolist() == [1, 1]
  assert (out['classes'][:, 0] == 1).all()
  np.testing.assert_allclose(out['boxes'][:, 0], np.stack([TARGET, TARGET]), atol=1e-3)
  windows = sum(G.output_size(s[0], True) ** 2 for s in SCALES)
  p = float(jax.nn.softmax(jnp.asarray([0.0, 3.0, 1.0, 0.5]))[1])
  np.testing.assert_allclose(out['scores'][:, 0], windows * p, rtol=1e-4)


def test_background_dominant_gives_no_detection():
  out = run((0.0, 0.5, 0.2, 4.0), score_threshold=0.3, method='nms', threshold=0.5)
  assert not out['valid'].any() and (out['classes'] == -1).all()


def test_two_classes_nms():
  out = run((2.0, 2.0, -5.0, -5.0), score_threshold=0.3, method='nms', threshold=0.5)
  assert out['valid'].sum(axis=1).tolist() == [2, 2]
  assert sorted(out['classes'][0, :2].tolist()) == [0, 1]


def test_score_average_reaches_the_merge():
  # Windows point at boxes spread over ~10 px; every window of class 1 merges (t = 1e9) into one box, which
  # for 'score' is the probability-weighted mean of the thresholded candidates; 'pair' weights by merge order.
  model = localize.BoxModel(FakeClassifier(G, (0.0, 3.0, 1.0, 0.5)), FakeRegressor(G, spread=0.25))
  images = jnp.zeros((1, 72, 72, 3))
  union = localize.concat([detect.scale_detections(model, PARAMS, images, size, score_threshold=0.5,
                                                   max_per_scale=64) for size in SCALES])
  b, s = np.asarray(union.boxes[0], np.float64), np.asarray(union.scores[0], np.float64)
  v = np.asarray(union.valid[0])
  want = (s[v, None] * b[v]).sum(0) / s[v].sum()
  out = {}
  for average in ('pair', 'score'):
    fn = detect.make_detector(model, scales=SCALES, max_per_scale=64, max_detections=6, score_threshold=0.5,
                              method='overlap', threshold=1e9, average=average)
    out[average] = jax.tree.map(np.asarray, fn(PARAMS, images))
    assert out[average]['valid'].sum() == 1 and out[average]['classes'][0, 0] == 1
  np.testing.assert_allclose(out['score']['boxes'][0, 0], want, atol=2e-3)
  assert np.abs(out['pair']['boxes'][0, 0] - want).max() > 0.1
  assert np.ptp(b[v, 0]) > 5


class OutsideRegressor(nn.Module):
  """Every window's box lies wholly left of and above the image: clipped to its border, an empty box."""
  geometry: Geometry

  def __call__(self, pooled):
    f = self.geometry.fc_kernel
    b, h, w, _ = pooled.shape
    return jnp.full((b, h - f + 1, w - f + 1, 1, 4), -10.0)  # -10 windows' sizes from each window's corner


def test_empty_boxes_are_never_detections():
  # Class 1 scores ~0.84 everywhere, but every box is clipped to zero area: no detection (an H8 finding: a
  # [0, 240, 0, 240] box with score 0.61 was reported), and no candidate is counted as non-finite either.
  model = localize.BoxModel(FakeClassifier(G, (0.0, 3.0, 1.0, 0.5)), OutsideRegressor(G))
  images = jnp.zeros((2, 72, 72, 3))
  boxes = detect.scale_detections(model, PARAMS, images, SCALES[0], score_threshold=0.5, max_per_scale=64).boxes
  assert (np.asarray(boxes) == 0).all()  # the regressor's boxes, clipped: [0, 0, 0, 0]
  for method in ('overlap', 'nms'):
    fn = detect.make_detector(model, scales=SCALES, max_per_scale=64, max_detections=6, score_threshold=0.5,
                              method=method, threshold=0.5)
    out = jax.tree.map(np.asarray, fn(PARAMS, images))
    assert not out['valid'].any() and (out['classes'] == -1).all() and (out['num_nonfinite'] == 0).all()
