"""The detection task: on-the-fly hard negatives, background labels, init from localization, a step that learns."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from overfeat_jax.errors import InputError
from overfeat_jax.settings import BoxSettings, MiningSettings, ModelSettings, StageSettings
from overfeat_jax.tasks import detection, localization


def tiny_config(stage='detection', **box):
  box = dict(dict(regression='single', hidden=(16, 8), train_scales=((64, 64), (96, 96)), fine=True,
                  loss_weight=1.0, eval_scales=((64, 64), (96, 96)), score_threshold=0.2, merge='overlap',
                  threshold=0.8, nms_iou=0.5, max_per_scale=32, max_detections=8, eval_size=96, top_k=2), **box)
  return StageSettings(stage, num_classes=3, crop_size=64,
                       model=ModelSettings('small', 16, 'float32', dropout_rate=0.0, init_scheme='he'),
                       box=BoxSettings(**box), mining=MiningSettings(num_hard=3, num_random=2,
                                                                      negative_max_coverage=0.25))


def test_hard_negatives_are_the_most_offending_candidates():
  offending = jnp.asarray([[0.1, 0.9, 0.8, 0.95, 0.3, 0.7, 0.2, 0.05]])
  candidates = jnp.asarray([[True, True, True, False, True, True, True, True]])  # 0.95 is a positive window
  chosen = detection.mine_negatives(offending, candidates, jax.random.key(0), num_hard=3, num_random=0)
  np.testing.assert_array_equal(np.flatnonzero(np.asarray(chosen[0])), [1, 2, 5])
  both = np.asarray(detection.mine_negatives(offending, candidates, jax.random.key(0), num_hard=3,
                                             num_random=2)[0])
  assert both[[1, 2, 5]].all() and both.sum() == 5 and not both[3]  # random ones come from the other candidates


def test_mining_with_too_few_candidates():
  offending = jnp.asarray([[0.5, 0.4, 0.3], [0.1, 0.2, 0.3]])
  candidates = jnp.asarray([[True, False, False], [False, False, False]])
  chosen = np.asarray(detection.mine_negatives(offending, candidates, jax.random.key(0), num_hard=2,
                                               num_random=2))
  np.testing.assert_array_equal(chosen, [[True, False, False], [False, False, False]])


def det_batch():
  rng = np.random.default_rng(0)
  boxes = np.zeros((2, 4, 4), np.float32)
  labels = np.full((2, 4), -1, np.int32)
  boxes[0, :2], labels[0, :2] = [[4, 6, 40, 44], [50, 40, 80, 76]], [0, 2]  # image 1 has no objects
  return {'image': jnp.asarray(rng.integers(0, 256, (2, 96, 96, 3), dtype=np.uint8)), 'boxes': jnp.asarray(boxes),
          'box_labels': jnp.asarray(labels), 'label': jnp.asarray([-1, -1])}


def test_init_from_localization_adds_a_neutral_background_column():
  loc_task = localization.make_task(tiny_config('localization'), previous_params=None)
  loc_params = jax.jit(loc_task.init_params)(jax.random.key(0))
  task = detection.make_task(tiny_config(), previous_params=loc_params)
  params = task.warm_start(jax.jit(task.init_params)(jax.random.key(1)))  # the copy runs outside jit
  fc8 = params['backbone']['classifier']['fc8']
  assert fc8['kernel'].shape[-1] == 4
  np.testing.assert_array_equal(np.asarray(fc8['kernel'][..., :3]),
                                np.asarray(loc_params['backbone']['classifier']['fc8']['kernel']))
  assert float(jnp.abs(fc8['kernel'][..., 3]).max()) == 0.0
  np.testing.assert_array_equal(np.asarray(params['backbone']['features']['conv1']['kernel']),
                                np.asarray(loc_params['backbone']['features']['conv1']['kernel']))
  assert jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), params['regressor'], loc_params['regressor']))


@pytest.mark.slow
def test_detection_step_learns_and_evaluates():
  config = tiny_config()
  task = detection.make_task(config)
  params = task.init_params(jax.random.key(0))
  tx = optax.adam(2e-3)
  opt_state = tx.init(params)
  batch = det_batch()

  @jax.jit
  def step(params, opt_state, rng):
    (loss, aux), grads = jax.value_and_grad(task.loss_fn, has_aux=True)(params, batch, rng, train=True)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, aux

  losses = []
  for i in range(30):
    params, opt_state, loss, aux = step(params, opt_state, jax.random.key(i))
    losses.append(float(loss))
  assert np.isfinite(losses).all() and losses[-1] < 0.5 * losses[0], losses
  assert float(aux['positive_windows']) > 0
  (evaluation,) = task.evaluations
  out = jax.tree.map(np.asarray, jax.jit(evaluation.eval_step)(params, batch))
  assert out['classes'].shape == (2, 8)
  metrics = evaluation.summarize(out)
  assert metrics['count'] == 2 and metrics['classes_without_gt'] == 1  # class 1 has no ground truth
  assert 0.0 <= metrics['mAP'] <= 1.0 and abs(metrics['map_error'] - (1 - metrics['mAP'])) < 1e-9


def test_loss_is_computed_at_the_batch_size():
  """The step trains at whatever scale the pipeline resized the batch to (one compiled program per scale)."""
  from overfeat_jax.data import preprocess  # pylint: disable=g-import-not-at-top
  config = tiny_config()
  task = detection.make_task(config)
  params = jax.jit(task.init_params)(jax.random.key(0))
  batch = jax.tree.map(np.asarray, det_batch())
  positives = []
  for index in (0, 1):  # batches 0 and 1: the two scales of box.train_scales
    scaled = preprocess.resize_batch(batch, preprocess.scale_of_batch(config.box.train_scales, index))
    loss, aux = jax.jit(lambda p, b: task.loss_fn(p, b, jax.random.key(0), train=False))(params, scaled)
    assert np.isfinite(float(loss))
    positives.append(float(aux['positive_windows']))
  assert positives[0] != positives[1] and min(positives) > 0  # the two scales see different windows


def test_eval_options_carry_the_merge_average():
  assert detection.eval_options(tiny_config())['average'] == 'pair'  # the default
  options = detection.eval_options(tiny_config(merge_average='score'))
  assert options['average'] == 'score' and options['method'] == 'overlap'
  assert options['score_threshold'] == 0.2 and options['scales'] == ((64, 64), (96, 96))
  with pytest.raises(InputError, match='average'):
    detection.eval_options(tiny_config(merge_average='weighted'))


def test_a_detection_stage_without_a_mining_section_is_refused():
  with pytest.raises(InputError, match='mining'):
    detection.make_task(dataclasses.replace(tiny_config(), mining=None))


def test_evaluation_applies_the_devkit_blacklist_from_the_records():
  """Issue 15's worked case through the detection evaluation: a DET validation record's `ignore_classes`
  reaches the batch (`preprocess.eval_example`) and the summary leaves that (image, class) pair out: mAP 0.25
  without the blacklist, 1.0 (the devkit's value) with it."""
  from overfeat_jax.data import preprocess  # pylint: disable=g-import-not-at-top
  record = {'image': np.zeros((60, 60, 3), np.uint8), 'boxes': np.array([[1, 1, 50, 50]], np.float32),
            'box_labels': np.array([0]), 'ignore_classes': np.array([0])}
  example = preprocess.eval_example(record, view='resize', size=60, max_boxes=2)
  assert example['ignore_classes'].tolist() == [0, -1]
  outputs = {'classes': np.array([[0, -1], [0, -1]]), 'scores': np.array([[0.9, 0.0], [0.8, 0.0]]),
             'boxes': np.array([[[60, 60, 90, 90], [0, 0, 0, 0]], [[1, 1, 50, 50], [0, 0, 0, 0]]], np.float32),
             'gt_boxes': np.array([[[1, 1, 50, 50], [0, 0, 0, 0]]] * 2, np.float32),
             'box_labels': np.array([[0, -1], [0, -1]]), 'num_nonfinite': np.array([0, 3])}
  summarize = detection.make_summarize(1)
  assert summarize(outputs)['mAP'] == pytest.approx(0.25)
  metrics = summarize({**outputs, 'ignore_classes': np.array([example['ignore_classes'], [-1, -1]])})
  assert metrics['mAP'] == 1.0 and metrics['blacklisted'] == 1 and metrics['nonfinite'] == 3


def test_a_split_without_ground_truth_boxes_warns_that_map_is_undefined(caplog):
  # An H8 finding: a COCO evaluation file without annotations printed 'multiscale/mAP nan' and nothing else.
  outputs = {'classes': np.array([[0, -1]]), 'scores': np.array([[0.9, 0.0]]),
             'boxes': np.array([[[1, 1, 50, 50], [0, 0, 0, 0]]], np.float32),
             'gt_boxes': np.zeros((1, 2, 4), np.float32), 'box_labels': np.array([[-1, -1]])}
  with caplog.at_level('INFO'):
    metrics = detection.make_summarize(2)(outputs)
  assert np.isnan(metrics['mAP']) and metrics['classes_without_gt'] == 2
  messages = [r.getMessage() for r in caplog.records]
  assert any('the evaluation split has no ground-truth boxes: mAP is undefined' in m for m in messages), messages
  assert not any('excludes classes without ground truth' in m for m in messages), messages
