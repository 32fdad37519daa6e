"""Losses of the training tasks (pure jnp, shapes checked at the boundary)."""

import chex
import jax
import jax.numpy as jnp
import optax


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean cross-entropy of [B, C] float logits (computed in float32) against int labels [B]."""
  chex.assert_rank(logits, 2)
  chex.assert_shape(labels, logits.shape[:1])
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels).mean()


def topk_correct(logits: jax.Array, labels: jax.Array, k: int) -> jax.Array:
  """[B] bool: the label is among the k highest scores."""
  topk = jax.lax.top_k(logits, k)[1]  # [B, k]
  return (topk == labels[:, None]).any(axis=-1)
