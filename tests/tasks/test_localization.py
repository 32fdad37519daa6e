"""The localization task: loss masks, frozen layers 1-5, a regressor that learns, and its evaluation."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from overfeat_jax.config_files import settings_from_config
from overfeat_jax.errors import InputError
from overfeat_jax.inference import localize
from overfeat_jax.models.geometry import get_geometry
from overfeat_jax.models.overfeat import init_params as init_overfeat
from overfeat_jax.settings import BoxSettings, ModelSettings, StageSettings
from overfeat_jax.tasks import detection, localization, targets
from overfeat_jax.train import optim
from tests.train.helpers import load_config


def tiny_config(regression='single', **box):
  box = dict(dict(hidden=(16, 8), train_scales=((64, 64), (80, 80)), fine=True, eval_scales=((64, 64), (80, 80)),
                  top_k=2, merge='overlap', threshold=0.8, nms_iou=0.5, eval_size=72), **box)
  return StageSettings('localization', num_classes=3, crop_size=64,
                       model=ModelSettings('small', 16, 'float32', dropout_rate=0.5, init_scheme='he'),
                       box=BoxSettings(regression=regression, **box))


def tiny_batch(batch=2, size=72):
  rng = np.random.default_rng(0)
  boxes = np.zeros((batch, 3, 4), np.float32)
  labels = np.full((batch, 3), -1, np.int32)
  boxes[:, 0] = [10, 12, 40, 50]
  labels[:, 0] = [1, 2][:batch]
  boxes[1, 1], labels[1, 1] = [30, 30, 70, 66], 2
  return {'image': jnp.asarray(rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)),
          'boxes': jnp.asarray(boxes), 'box_labels': jnp.asarray(labels), 'label': jnp.asarray(labels[:, 0])}


def test_no_gradient_outside_the_overlap_rule():
  g = get_geometry('small', 16)
  boxes = jnp.asarray([[[10.0, 10.0, 30.0, 30.0]]])
  t = targets.dense_targets(g, (80, 80), boxes, jnp.asarray([[0]]), fine=True)
  pred = jax.random.normal(jax.random.key(1), (1, 4, 4, 1, 4))
  grad = jax.grad(lambda p: localization.masked_l2(p, t)[0])(pred)
  moved = np.abs(np.asarray(grad)).sum(axis=(-1, -2))[0] > 0  # [4, 4]
  np.testing.assert_array_equal(moved, np.asarray(t.positive[0]))
  assert 0 < moved.sum() < moved.size


def test_per_class_loss_uses_the_labelled_class_only():
  g = get_geometry('small', 16)
  t = targets.dense_targets(g, (64, 64), jnp.asarray([[[5.0, 5.0, 50.0, 50.0]]]), jnp.asarray([[2]]))
  pred = jnp.zeros((1, 2, 2, 3, 4))
  grad = np.asarray(jax.grad(lambda p: localization.masked_l2(p, t)[0])(pred))
  assert np.abs(grad[..., 2, :]).sum() > 0
  assert np.abs(grad[..., :2, :]).sum() == 0


@pytest.mark.parametrize('regression', ['single', 'per_class'])
def test_frozen_backbone_unchanged_and_regressor_learns(regression):
  config = tiny_config(regression)
  box_model = localization.make_box_model(config)
  classifier_params = init_overfeat(box_model.classifier, jax.random.key(0))
  task = localization.make_task(config, previous_params=classifier_params)
  params = task.initial_params(jax.random.key(1))
  jax.tree.map(np.testing.assert_array_equal, params['backbone'], classifier_params)  # the previous stage's
  tx = optim.make_optimizer('adam', optax.constant_schedule(3e-3), weight_decay=1e-4,
                            trainable_mask=task.trainable_mask(params))
  opt_state = tx.init(params)
  batch = tiny_batch()

  @jax.jit
  def step(params, opt_state):
    (loss, aux), grads = jax.value_and_grad(task.loss_fn, has_aux=True)(params, batch, None, train=True)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, aux, grads

  losses = []
  new = params
  for _ in range(40):
    new, opt_state, loss, aux, grads = step(new, opt_state)
    losses.append(float(loss))
  assert all(float(jnp.abs(x).max()) == 0.0 for x in jax.tree.leaves(grads['backbone']))
  for a, b in zip(jax.tree.leaves(params['backbone']), jax.tree.leaves(new['backbone'])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert float(aux['positive_windows']) > 0
  assert losses[-1] < 0.5 * losses[0], losses


def test_evaluation_step_and_summary():
  config = tiny_config()
  task = localization.make_task(config, previous_params=None)
  params = task.init_params(jax.random.key(0))
  (evaluation,) = task.evaluations
  assert evaluation.view == 'resize' and evaluation.size == 72
  out = jax.jit(evaluation.eval_step)(params, tiny_batch())
  assert out['classes'].shape == (2, 5) and out['boxes'].shape == (2, 5, 4)
  boxes = np.asarray(out['boxes'])
  assert (boxes >= 0).all() and (boxes <= 72).all()  # decoded boxes are clipped to the image
  metrics = evaluation.summarize(jax.tree.map(np.asarray, out))
  assert metrics['count'] == 2 and 0.0 <= metrics['loc_error'] <= 1.0
  assert metrics['nonfinite'] == 0  # a finite network: no candidate dropped (inference.nonfinite)


def test_batch_resize_moves_boxes_with_the_image():
  """`preprocess.resize_batch`, the pipeline's per-step training scale (tests/data/test_batch_scales.py)."""
  from overfeat_jax.data import preprocess  # pylint: disable=g-import-not-at-top
  batch = jax.tree.map(np.asarray, tiny_batch())
  image = np.zeros((2, 72, 72, 3), np.uint8)
  image[:, 12:50, 10:40] = 255  # a white block exactly under box 0
  batch['image'] = image
  out = preprocess.resize_batch(batch, (96, 144))
  assert out['image'].shape == (2, 96, 144, 3) and out['image'].dtype == np.uint8
  np.testing.assert_allclose(out['boxes'][0, 0], [20, 16, 80, 66.6667], rtol=1e-4)  # x * 2, y * 4/3
  x1, y1, x2, y2 = np.round(out['boxes'][0, 0]).astype(int)
  block = out['image'][0, :, :, 0] > 127
  rows, cols = np.flatnonzero(block.any(1)), np.flatnonzero(block.any(0))
  assert abs(rows[0] - y1) <= 1 and abs(rows[-1] + 1 - y2) <= 1 and abs(cols[0] - x1) <= 1
  assert abs(cols[-1] + 1 - x2) <= 1
  np.testing.assert_array_equal(out['boxes'][0, 2], 0.0)  # padding stays zero
  np.testing.assert_array_equal(out['box_labels'], batch['box_labels'])
  assert preprocess.resize_batch(batch, (72, 72)) is batch


def test_eval_options_carry_the_merge_average():
  assert localization.eval_options(tiny_config())['average'] == 'pair'  # the default
  assert localization.eval_options(tiny_config(merge_average='score'))['average'] == 'score'
  with pytest.raises(InputError, match='average'):
    localization.eval_options(tiny_config(merge_average='median'))


@pytest.mark.parametrize('stage,options', [('localization', localization.eval_options),
                                           ('detection', detection.eval_options)])
def test_demo_config_box_sections_set_the_merge_average(stage, options):
  config = settings_from_config(load_config('embedded', 'smoke'), stage)
  assert config.box.merge_average in localize.AVERAGE_CHOICES
  assert options(config)['average'] == config.box.merge_average


def test_evaluation_uses_the_configured_merge_average():
  # Same random network, greedy merge at t = 1e9 (each class's windows merge into one box): the
  # confidence-weighted boxes differ from the paper's pairwise averages.
  config = tiny_config(threshold=1e9)
  params = localization.make_task(config, previous_params=None).init_params(jax.random.key(0))
  boxes = {}
  for average in ('pair', 'score'):
    config = dataclasses.replace(config, box=dataclasses.replace(config.box, merge_average=average))
    (evaluation,) = localization.make_task(config, previous_params=None).evaluations
    boxes[average] = np.asarray(jax.jit(evaluation.eval_step)(params, tiny_batch())['boxes'])
  assert np.abs(boxes['pair'] - boxes['score']).max() > 0.1
