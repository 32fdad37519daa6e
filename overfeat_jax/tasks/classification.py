"""The classification task (paper section 3.1): OverFeat trained with softmax cross-entropy on random crops,
evaluated on the single centre crop and with the dense multi-scale, fine-stride, flipped procedure (3.3).
"""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from overfeat_jax.inference.multiscale import multiscale_class_scores
from overfeat_jax.metrics.classification import topk_errors
from overfeat_jax.models.geometry import get_geometry
from overfeat_jax.models.overfeat import OverFeat, init_params
from overfeat_jax.tasks import losses
from overfeat_jax.tasks.task import Evaluation, Task, all_trainable

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def make_model(config: ml_collections.ConfigDict) -> OverFeat:
  """The network of `config.model` (geometry name, width divisor, init) with `config.num_classes` outputs."""
  geometry = get_geometry(config.model.geometry, config.model.width_divisor)
  return OverFeat(geometry, num_classes=config.num_classes, dropout_rate=config.model.dropout_rate,
                  dtype=DTYPES[config.dtype], init_scheme=config.model.init_scheme)


def score_outputs(scores: jax.Array, labels: jax.Array) -> dict[str, jax.Array]:
  """Per-example eval outputs: class scores [B, C] (float32) and labels [B]."""
  return {'scores': scores.astype(jnp.float32), 'label': labels.astype(jnp.int32)}


def classification_errors(outputs: dict[str, np.ndarray]) -> dict[str, float]:
  """Top-1 and top-5 error (ILSVRC, `metrics.classification`) of every evaluated example, and their count."""
  return {**topk_errors(outputs['scores'], outputs['label']), 'count': float(len(outputs['label']))}


def make_task(config: ml_collections.ConfigDict, previous_params: Any = None) -> Task:
  """The classification task of `config` (first stage: `previous_params` is unused)."""
  del previous_params
  model = make_model(config)

  def loss_fn(params, batch, rng, *, train):
    logits = model.apply({'params': params}, batch['image'], train=train, rngs={'dropout': rng})
    logits = logits.reshape(logits.shape[0], -1)  # [B, 1, 1, C] at the training size -> [B, C]
    loss = losses.softmax_cross_entropy(logits, batch['label'])
    return loss, {'top1_error': 1.0 - (logits.argmax(-1) == batch['label']).mean()}

  def center_crop_step(params, batch):
    logits = model.apply({'params': params}, batch['image'])
    return score_outputs(logits.max(axis=(1, 2)), batch['label'])  # 1x1 map at the crop size

  scales = tuple(tuple(s) if isinstance(s, (tuple, list)) else (s, s) for s in config.eval.scales)

  def multiscale_step(params, batch):
    scores = multiscale_class_scores(model, params, batch['image'], scales=scales, flips=config.eval.flips,
                                     fine=config.eval.fine)
    return score_outputs(scores, batch['label'])

  evaluations = (
      Evaluation('center_crop', 'center_crop', config.crop_size, center_crop_step, classification_errors),
      Evaluation('multiscale', 'resize', config.eval.resize, multiscale_step, classification_errors))
  return Task(name='classification', init_params=lambda rng: init_params(model, rng), loss_fn=loss_fn,
              trainable_mask=all_trainable, evaluations=evaluations, best_metric='center_crop/top1_error',
              model=model)
