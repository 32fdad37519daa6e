"""The localization task (paper section 4): a box regressor on the fixed layer-5 features of the classifier.

Training: layers 1-5 and the classifier come from the classification stage and stay fixed (`trainable_mask`
marks only the regressor, and the features are read through `stop_gradient`). Multi-scale training, one scale
per step: the input pipeline resizes each whole batch (`data.preprocess.scale_of_batch` / `resize_batch`,
`images.resize`, boxes scaled with it) to the scales of `box.train_scales` in turn (batch b, i.e. step b + 1,
uses scale b mod n; part of the iterator's resumable state), so the jitted step sees one
static shape per scale (n small compiled programs, cached by `jax.jit`) and contains no image resize. At the
batch's size the regressor runs densely at the fine stride (every location and offset) and takes an L2 loss
between predicted and true window-relative box edges (`box_ops.encode`) at the windows whose input window
contains more than half of a ground-truth box: the sum of squared edge errors averaged over those windows.

Evaluation: the paper's procedure (`inference.localize`) on the `resize` view and the ILSVRC localization error
(`metrics.localization`) of its top-5 (class, box) guesses.
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from overfeat_jax.errors import InputError
from overfeat_jax.inference import localize as localize_lib
from overfeat_jax.inference.dense import dense_apply
from overfeat_jax.metrics.localization import LocalizationCounts
from overfeat_jax.models import build
from overfeat_jax.models.overfeat import init_params as init_overfeat
from overfeat_jax.settings import REGRESSION, StageSettings
from overfeat_jax.tasks import targets
from overfeat_jax.tasks.classification import make_model
from overfeat_jax.tasks.task import Evaluation, Task


def make_box_model(settings: StageSettings, num_outputs: int | None = None) -> localize_lib.BoxModel:
  """The classifier (`num_outputs` outputs, default `settings.num_outputs`) and the regressor
  (`settings.box`: 'single' = one box, 'per_class' = one box per class).

  Raises:
    InputError: the settings have no box section, or an unknown regression.
  """
  box, m = settings.box, settings.model
  if box is None:
    raise InputError(f'the {settings.stage} stage needs a box section (config.{settings.stage}.box).')
  if box.regression not in REGRESSION:
    raise InputError(f'box.regression must be one of {REGRESSION}, got {box.regression!r}.')
  per_class = settings.num_classes if box.regression == 'per_class' else 1
  regressor = build.regressor(m.geometry, m.width_divisor, per_class, box.hidden, dtype=m.dtype,
                              init_scheme=m.init_scheme)
  return localize_lib.BoxModel(make_model(settings, num_outputs), regressor)


def init_regressor(box_model: localize_lib.BoxModel, rng: jax.Array) -> Any:
  g = box_model.geometry
  pooled = jnp.zeros((1, g.fc_kernel, g.fc_kernel, g.layer5_channels), jnp.float32)
  return box_model.regressor.init(rng, pooled)['params']


def select_boxes(pred: jax.Array, labels: jax.Array) -> jax.Array:
  """[B, h, w, R, 4] regressor outputs -> [B, h, w, 4]: the only box (R = 1) or the labelled class's box."""
  if pred.shape[-2] == 1:
    return pred[..., 0, :]
  idx = jnp.clip(labels, 0, pred.shape[-2] - 1)[..., None, None]
  return jnp.take_along_axis(pred, idx, axis=-2)[..., 0, :]


def masked_l2(pred: jax.Array, t: targets.DenseTargets) -> tuple[jax.Array, jax.Array]:
  """(sum over positive windows of the squared edge error, number of positive windows) of one scale."""
  err = jnp.sum(jnp.square(select_boxes(pred, t.labels) - t.deltas), axis=-1)  # [B, h, w]
  pos = t.positive.astype(jnp.float32)
  return jnp.sum(err * pos), jnp.sum(pos)


def box_loss(box_model: localize_lib.BoxModel, params: Any, batch: dict, *, fine: bool = True):
  """Regression loss of a batch at its own size (module docstring); layers 1-5 get no gradient."""
  model, geometry = box_model.classifier, box_model.geometry
  images, boxes, labels = batch['image'], batch['boxes'], batch['box_labels']
  size = tuple(images.shape[1:3])
  unpooled = jax.lax.stop_gradient(model.apply({'params': params['backbone']}, images, method=model.unpooled))
  head = lambda pooled: box_model.regressor.apply({'params': params['regressor']}, pooled)
  pred = dense_apply(head, unpooled, geometry.offset_pool, fine)  # [B, h, w, R, 4]
  t = targets.dense_targets(geometry, size, boxes, labels, fine)
  total, count = masked_l2(pred, t)
  return total / jnp.maximum(count, 1.0), count


def merge_options(settings: StageSettings) -> dict[str, Any]:
  """The merge and scale options `settings.box` gives both `inference.localize.localize` and
  `inference.detect.detect`; the merge method and average are checked here, before anything is traced."""
  b = settings.box
  localize_lib.check_method(b.merge, b.merge_average)
  return dict(scales=b.eval_scales, method=b.merge, threshold=b.merge_threshold, fine=b.fine,
              average=b.merge_average)


def eval_options(settings: StageSettings) -> dict[str, Any]:
  """The inference options of `settings.box` for `inference.localize.localize`."""
  return dict(merge_options(settings), top_k=settings.box.top_k)


def localization_errors(outputs: dict[str, np.ndarray]) -> dict[str, float]:
  """ILSVRC localization and classification error of the top-5 guesses (images without boxes are skipped).

  `nonfinite` counts the candidate boxes dropped for a NaN/inf score or box (`inference.nonfinite`).
  """
  counts = LocalizationCounts().update_batch(outputs['classes'], outputs['boxes'], outputs['box_labels'],
                                             outputs['gt_boxes'])
  r = counts.result()
  return {'loc_error': r.error, 'top5_error': r.classification_error, 'count': float(r.num_images),
          'skipped': float(r.num_skipped), 'nonfinite': float(np.sum(outputs.get('num_nonfinite', 0)))}


def with_previous_backbone(previous_params: Any) -> Callable[[Any], Any] | None:
  """The stage's `warm_start`: fresh params -> the same with the previous stage's classifier as the backbone
  (from a classification tree, or a localization tree's backbone); None without a previous stage."""
  if previous_params is None:
    return None
  backbone = previous_params['backbone'] if 'backbone' in previous_params else previous_params
  return lambda fresh: {**fresh, 'backbone': backbone}


def make_task(settings: StageSettings, previous_params: Any = None) -> Task:
  """The localization stage of `settings` (its box section), on top of the classification stage's params."""
  box_model = make_box_model(settings)
  fine = settings.box.fine

  def init_params(rng):  # fresh; the previous stage's backbone is copied over it by `warm_start`, outside jit
    r1, r2 = jax.random.split(rng)
    return {'backbone': init_overfeat(box_model.classifier, r1), 'regressor': init_regressor(box_model, r2)}

  def loss_fn(params, batch, rng, *, train):
    del rng, train  # the regressor has no dropout
    loss, count = box_loss(box_model, params, batch, fine=fine)
    return loss, {'positive_windows': count / batch['image'].shape[0]}

  predictor = make_predictor(box_model, settings)  # the evaluation and `predict` run this one function

  def eval_step(params, batch):
    out = predictor(params, batch['image'])
    return {'classes': out['classes'], 'boxes': out['boxes'], 'box_labels': batch['box_labels'],
            'gt_boxes': batch['boxes'], 'num_nonfinite': out['num_nonfinite']}

  trainable = lambda params: {'backbone': jax.tree.map(lambda _: False, params['backbone']),
                              'regressor': jax.tree.map(lambda _: True, params['regressor'])}
  evaluation = Evaluation('multiscale', 'resize', settings.box.eval_size, eval_step, localization_errors)
  return Task(name='localization', init_params=init_params, loss_fn=loss_fn, trainable_mask=trainable,
              evaluations=(evaluation,), best_metric='multiscale/loc_error', model=box_model,
              warm_start=with_previous_backbone(previous_params), settings=settings, predictor=predictor,
              predictor_size=settings.box.eval_size,
              cold_start='localization without a classification stage or config.init: layers 1-5 are random '
                         'and fixed.')


def make_predictor(box_model: localize_lib.BoxModel,
                   settings: StageSettings) -> Callable[[Any, jax.Array], dict]:
  """The localization predictor (paper section 4.3): `fn(params, images [B, S, S, 3], 0..255) -> {'classes'
  [B, K] int32 (-1 = none), 'boxes' [B, K, 4] (x1, y1, x2, y2 in the view's pixels), 'scores' [B, K],
  'num_nonfinite' [B]}`, the top `box.top_k` guesses of `inference.localize.localize` at `box.eval_scales`, on
  whole images at the square view S = `box.eval_size`."""
  options = eval_options(settings)
  return lambda params, images: localize_lib.localize(box_model, params, images, **options)
