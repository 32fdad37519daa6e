"""The detection task (paper section 5): a background class, on-the-fly negatives, and the box regressor.

The classifier gets C + 1 outputs (index C = background) and is trained densely on whole images, one scale of
`box.train_scales` per step (the whole batch resized by the input pipeline, as in localization:
`data.preprocess.scale_of_batch`),
at every location and offset of the fine map: every window (location and offset of the fine map) is labelled with the class of
the ground-truth box it contains more than half of (`tasks.targets`, the same rule as localization), or
background. The loss is softmax cross-entropy over
  - every positive window,
  - per image, the `mining.num_hard` most offending background windows (highest probability of any object
    class) and `mining.num_random` other random background windows,
chosen inside the jitted step with static shapes (top-k over masked scores; the paper's replacement for
bootstrapping passes over a fixed negative set). Background candidates are windows that contain at most
`mining.negative_max_coverage` of every box: windows holding a large part of an object without passing the >50%
rule are neither positive nor negative. Added to it, `box.loss_weight` times the regressor's L2 loss at the
positive windows (`localization.masked_l2`); the regressor reads layer 5 through `stop_gradient`, so only the
classification loss trains layers 1-5 (all of which train in this stage, starting from the localization stage).
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from overfeat_jax.errors import InputError
from overfeat_jax.inference import detect as detect_lib
from overfeat_jax.inference import localize as localize_lib
from overfeat_jax.metrics.detection import DetectionAccumulator
from overfeat_jax.models.overfeat import init_params as init_overfeat
from overfeat_jax.settings import MiningSettings, StageSettings
from overfeat_jax.tasks import localization, targets
from overfeat_jax.tasks.task import Evaluation, Task, all_trainable


def mine_negatives(offending: jax.Array, candidates: jax.Array, rng: jax.Array, *, num_hard: int,
                   num_random: int) -> jax.Array:
  """Per image, the `num_hard` highest-`offending` candidates and `num_random` random other candidates.

  Args:
    offending: [B, P] how much each window looks like an object (e.g. max object-class probability).
    candidates: [B, P] bool, windows that may serve as negatives.
    rng: key for the random negatives.

  Returns:
    [B, P] bool selection (fewer per image when there are fewer candidates).
  """
  batch, windows = candidates.shape
  chosen = jnp.zeros_like(candidates)
  rows = jnp.arange(batch)[:, None]
  for count, score in ((num_hard, offending), (num_random, jax.random.uniform(rng, candidates.shape))):
    k = min(count, windows)
    if k <= 0:
      continue
    masked = jnp.where(candidates & ~chosen, jax.lax.stop_gradient(score), -jnp.inf)
    top, idx = jax.lax.top_k(masked, k)  # [B, k]
    chosen = chosen.at[rows, idx].max(jnp.isfinite(top))
  return chosen


def window_terms(box_model, params, batch, rng, *, train: bool, fine: bool, negative_max_coverage: float):
  """Per-window pieces of a batch at its own size, flattened to [B, P]: logits, labels, positive, candidates,
  box error."""
  images, boxes, labels = batch['image'], batch['boxes'], batch['box_labels']
  logits, pred = localize_lib.dense_outputs(box_model, params, images, fine=fine, train=train, rng=rng,
                                            regressor_stop_gradient=True)
  t = targets.dense_targets(box_model.geometry, tuple(images.shape[1:3]), boxes, labels, fine)
  background = logits.shape[-1] - 1
  err = jnp.sum(jnp.square(localization.select_boxes(pred, t.labels) - t.deltas), axis=-1)
  flat = lambda x: x.reshape(x.shape[0], -1, *x.shape[3:])
  return (flat(logits), flat(jnp.where(t.positive, t.labels, background)), flat(t.positive),
          flat(~t.positive & (t.max_coverage <= negative_max_coverage)), flat(err))


def detection_loss(box_model, params, batch, rng, *, train: bool, fine: bool, mining: MiningSettings,
                   box_weight: float):
  """(loss, metrics) of a batch: mined cross-entropy + weighted box L2 (module docstring)."""
  r_drop, r_mine = jax.random.split(rng)
  logits, labels, positive, candidates, err = window_terms(
      box_model, params, batch, r_drop, train=train, fine=fine,
      negative_max_coverage=mining.negative_max_coverage)
  probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  offending = probs[..., :-1].max(axis=-1)  # [B, P]
  negatives = mine_negatives(offending, candidates, r_mine, num_hard=mining.num_hard, num_random=mining.num_random)
  weight = (positive | negatives).astype(jnp.float32)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
  cls_loss = jnp.sum(ce * weight) / jnp.maximum(weight.sum(), 1.0)
  pos = positive.astype(jnp.float32)
  reg_loss = jnp.sum(err * pos) / jnp.maximum(pos.sum(), 1.0)
  correct = (logits.argmax(-1) == labels).astype(jnp.float32)
  metrics = {'cls_loss': cls_loss, 'box_loss': reg_loss, 'positive_windows': pos.sum() / pos.shape[0],
             'mined_error': jnp.sum((1 - correct) * weight) / jnp.maximum(weight.sum(), 1.0)}
  return cls_loss + box_weight * reg_loss, metrics


def transfer_backbone(fresh: Any, previous: Any, num_classes: int) -> Any:
  """The previous stage's classifier with a background column added to its last layer (zeros).

  Every layer is copied; the last layer's C class columns are copied and the background column starts at
  zero weight and bias, so the detector starts as the classifier with a neutral background score.
  """
  out = jax.tree.map(lambda x: x, previous)
  last = sorted(fresh['classifier'])[-1]  # fc names sort in layer order (fc6 < fc7 < fc8)
  kernel, bias = previous['classifier'][last]['kernel'], previous['classifier'][last]['bias']
  if kernel.shape[-1] != num_classes:
    raise ValueError(f'previous classifier has {kernel.shape[-1]} outputs, expected {num_classes}.')
  out['classifier'] = dict(previous['classifier'])
  out['classifier'][last] = {'kernel': jnp.concatenate([kernel, jnp.zeros_like(kernel[..., :1])], axis=-1),
                             'bias': jnp.concatenate([bias, jnp.zeros_like(bias[:1])])}
  return out


def init_fresh(box_model, rng) -> Any:
  """Detection params {'backbone', 'regressor'} from random initialisation (a pure function of `rng`)."""
  r1, r2 = jax.random.split(rng)
  return {'backbone': init_overfeat(box_model.classifier, r1),
          'regressor': localization.init_regressor(box_model, r2)}


def from_previous(previous_params: Any, num_classes: int) -> Callable[[Any], Any] | None:
  """The stage's `warm_start` (run outside jit): fresh params -> the localization (or classification) stage's
  backbone with a background output (`transfer_backbone`), and its regressor when the shapes match; None
  without a previous stage."""
  if previous_params is None:
    return None

  def warm_start(fresh: Any) -> Any:
    backbone = previous_params.get('backbone', previous_params)
    out = {'backbone': transfer_backbone(fresh['backbone'], backbone, num_classes),
           'regressor': fresh['regressor']}
    prev_reg = previous_params.get('regressor')
    if prev_reg is not None and jax.tree.map(jnp.shape, prev_reg) == jax.tree.map(jnp.shape, fresh['regressor']):
      out['regressor'] = prev_reg
    return out
  return warm_start


def eval_options(settings: StageSettings) -> dict[str, Any]:
  """The inference options of `settings.box` for `inference.detect.detect`."""
  b = settings.box
  return dict(localization.merge_options(settings), score_threshold=b.score_threshold,
              max_per_scale=b.max_per_scale, max_detections=b.max_detections)


def make_summarize(num_classes: int):
  """Host reduction: mAP (`metrics.detection`) and 1 - mAP (lower is better, picks the best checkpoint).

  Classes without any ground-truth box in the evaluated set are excluded from the mean, counted and logged; a set
  with no box at all has no mAP (NaN, a warning; `train.logging.Writer` writes no NaN to TensorBoard).
  When the examples carry `ignore_classes` (DET validation built with the devkit's blacklist,
  `data.imagenet_det`), those (image, class) pairs are left out as `eval_detection.m` does; `blacklisted` counts
  them. When they carry `ignore_boxes`/`ignore_labels` (own data: VOC difficult, COCO iscrowd), those boxes are
  not ground truth and a detection matching one is neither TP nor FP (`metrics.detection`); `ignored` counts such
  detections. `nonfinite` counts the candidate boxes dropped for a NaN/inf score or box (`inference.nonfinite`).
  """
  def summarize(outputs: dict[str, np.ndarray]) -> dict[str, float]:
    acc = DetectionAccumulator(num_classes)
    n = len(outputs['classes'])
    ignored = outputs.get('ignore_classes', np.full((n, 0), -1))
    hard_boxes = outputs.get('ignore_boxes', np.zeros((n, 0, 4)))  # own data's difficult / crowd boxes
    hard_labels = outputs.get('ignore_labels', np.full((n, 0), -1))
    for cls, box, score, gt_box, gt_label, ignore, hard_box, hard_label in zip(
        outputs['classes'], outputs['boxes'], outputs['scores'], outputs['gt_boxes'], outputs['box_labels'], ignored,
        hard_boxes, hard_labels):
      keep, real, hard = cls >= 0, gt_label >= 0, hard_label >= 0
      acc.add_image(box[keep], score[keep], cls[keep], gt_box[real], gt_label[real],
                    ignore_classes=ignore[ignore >= 0], ignore_boxes=hard_box[hard], ignore_labels=hard_label[hard])
    r = acc.result()
    if not r.ap:  # mAP is NaN: no class has a box to find (e.g. a COCO file without annotations)
      logging.warning('the evaluation split has no ground-truth boxes: mAP is undefined (NaN; it is not written '
                      'to TensorBoard). Evaluate on a split with boxes (config.data.eval_split).')
    elif r.classes_without_gt:
      logging.info('detection mAP excludes classes without ground truth: %s', r.classes_without_gt)
    return {'mAP': r.mean_ap, 'map_error': 1.0 - r.mean_ap, 'count': float(r.num_images),
            'classes_without_gt': float(len(r.classes_without_gt)),
            'blacklisted': float((np.asarray(ignored) >= 0).sum()), 'ignored': float(r.num_ignored),
            'nonfinite': float(np.sum(outputs.get('num_nonfinite', 0)))}
  return summarize


def make_task(settings: StageSettings, previous_params: Any = None) -> Task:
  """The detection stage of `settings` (its box and mining sections), after the localization stage.

  Raises:
    InputError: the settings have no box section, or no mining section.
  """
  if settings.mining is None:
    raise InputError('the detection stage needs a mining section (config.detection.mining).')
  box_model = localization.make_box_model(settings)  # num_classes + 1 outputs: the last is background
  fine, mining, box_weight = settings.box.fine, settings.mining, settings.box.loss_weight

  def loss_fn(params, batch, rng, *, train):
    return detection_loss(box_model, params, batch, rng, train=train, fine=fine, mining=mining,
                          box_weight=box_weight)

  predictor = make_predictor(box_model, settings)  # the evaluation and `predict` run this one function

  def eval_step(params, batch):
    out = predictor(params, batch['image'])
    step = {'classes': out['classes'], 'boxes': out['boxes'], 'scores': out['scores'],
            'num_nonfinite': out['num_nonfinite'], 'box_labels': batch['box_labels'], 'gt_boxes': batch['boxes']}
    for key in ('ignore_classes', 'ignore_boxes', 'ignore_labels'):  # DET blacklist; own data's difficult/crowd
      if key in batch:
        step[key] = batch[key]
    return step

  evaluation = Evaluation('multiscale', 'resize', settings.box.eval_size, eval_step,
                          make_summarize(settings.num_classes))
  return Task(name='detection',
              init_params=lambda rng: init_fresh(box_model, rng),
              loss_fn=loss_fn, trainable_mask=all_trainable, evaluations=(evaluation,),
              best_metric='multiscale/map_error', model=box_model,
              warm_start=from_previous(previous_params, settings.num_classes), settings=settings,
              predictor=predictor, predictor_size=settings.box.eval_size,
              cold_start='detection without earlier stages or config.init: every layer starts from random '
                         'initialisation.')


def make_predictor(box_model, settings: StageSettings) -> Callable[[Any, jax.Array], dict]:
  """The detection predictor (paper section 5): `fn(params, images [B, S, S, 3], 0..255) -> {'classes'
  [B, D] int32 (-1 = none), 'boxes' [B, D, 4] (x1, y1, x2, y2 in the view's pixels), 'scores' [B, D], 'valid',
  'num_nonfinite'}`, at most `box.max_detections` merged detections above `box.score_threshold`
  (`inference.detect.detect`), on whole images at the square view S = `box.eval_size`."""
  options = eval_options(settings)
  return lambda params, images: detect_lib.detect(box_model, params, images, **options)
