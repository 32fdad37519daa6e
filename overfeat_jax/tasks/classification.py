"""The classification task (paper section 3.1): OverFeat trained with softmax cross-entropy on random crops,
evaluated on the single centre crop and with the dense multi-scale, fine-stride, flipped procedure (3.3).
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from overfeat_jax.inference import ensemble
from overfeat_jax.metrics.classification import topk_errors
from overfeat_jax.models import build
from overfeat_jax.models.overfeat import OverFeat, init_params
from overfeat_jax.settings import StageSettings
from overfeat_jax.tasks import losses
from overfeat_jax.tasks.task import Evaluation, Task, all_trainable


def make_model(settings: StageSettings, num_outputs: int | None = None) -> OverFeat:
  """The stage's classifier (`settings.model`: geometry, width divisor, dtype, dropout, init) with
  `num_outputs` outputs (default `settings.num_outputs`: the classes, plus background for detection)."""
  m = settings.model
  return build.classifier(m.geometry, m.width_divisor, settings.num_outputs if num_outputs is None else num_outputs,
                          dtype=m.dtype, dropout_rate=m.dropout_rate, init_scheme=m.init_scheme)


def score_outputs(scores: jax.Array, labels: jax.Array) -> dict[str, jax.Array]:
  """Per-example eval outputs: class scores [B, C] (float32) and labels [B]."""
  return {'scores': scores.astype(jnp.float32), 'label': labels.astype(jnp.int32)}


def classification_errors(outputs: dict[str, np.ndarray]) -> dict[str, float]:
  """Top-1 and top-5 error (ILSVRC, `metrics.classification`) of every evaluated example, and their count."""
  return {**topk_errors(outputs['scores'], outputs['label']), 'count': float(len(outputs['label']))}


def make_task(settings: StageSettings, previous_params: Any = None) -> Task:
  """The classification task of `settings` (first stage: `previous_params` is unused)."""
  del previous_params
  model = make_model(settings)

  def loss_fn(params, batch, rng, *, train):
    logits = model.apply({'params': params}, batch['image'], train=train, rngs={'dropout': rng})
    logits = logits.reshape(logits.shape[0], -1)  # [B, 1, 1, C] at the training size -> [B, C]
    loss = losses.softmax_cross_entropy(logits, batch['label'])
    return loss, {'top1_error': 1.0 - (logits.argmax(-1) == batch['label']).mean()}

  def center_crop_step(params, batch):
    logits = model.apply({'params': params}, batch['image'])
    return score_outputs(logits.max(axis=(1, 2)), batch['label'])  # 1x1 map at the crop size

  predictor = make_predictor(model, settings)  # the whole-image evaluation and `predict` run this one function

  def multiscale_step(params, batch):
    return score_outputs(predictor(params, batch['image'])['scores'], batch['label'])

  evaluations = (
      Evaluation('center_crop', 'center_crop', settings.crop_size, center_crop_step, classification_errors),
      Evaluation('multiscale', 'resize', settings.eval.resize, multiscale_step, classification_errors))
  return Task(name='classification', init_params=lambda rng: init_params(model, rng), loss_fn=loss_fn,
              trainable_mask=all_trainable, evaluations=evaluations, best_metric='center_crop/top1_error',
              model=model, settings=settings, predictor=predictor, predictor_size=settings.eval.resize)


def make_predictor(model: OverFeat, settings: StageSettings,
                   view: str = 'dense') -> Callable[[Any, jax.Array], dict]:
  """The classification predictor: `fn(params, images [B, S, S, 3], 0..255) -> {'scores': [B, C] float32}`,
  class probabilities of whole images at the square view S = `settings.eval.resize`.

  'dense' (default): the paper's multi-scale procedure (section 3.3: `settings.eval` scales, flips, fine
  stride; `inference.multiscale`, the trainer's `multiscale` evaluation); 'ten_crop' / 'center_crop': the
  corners and centre (or the centre) at the training size, + mirrors if `flips` (`inference.ensemble`).
  """
  e = settings.eval
  return lambda params, images: {'scores': ensemble.view_scores(model, params, images.astype(jnp.float32),
                                                                view=view, scales=e.scales, flips=e.flips,
                                                                fine=e.fine)}
