"""The paper's schedule at epoch boundaries, coupled weight decay, frozen parameters, batch scaling."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from overfeat_jax.errors import InputError
from overfeat_jax.train import optim

PAPER_EPOCHS = (30, 50, 60, 70, 80)


@pytest.mark.parametrize('epoch, lr', [(0, 5e-2), (29.99, 5e-2), (30, 2.5e-2), (49.99, 2.5e-2), (50, 1.25e-2),
                                       (60, 6.25e-3), (70, 3.125e-3), (79.99, 3.125e-3), (80, 1.5625e-3),
                                       (89.99, 1.5625e-3)])
def test_paper_schedule_at_epoch_boundaries(epoch, lr):
  steps_per_epoch = 10_009  # ILSVRC2012: 1,281,167 images // 128
  schedule = optim.make_schedule('piecewise', 5e-2, steps_per_epoch=steps_per_epoch, total_steps=90 * 10_009,
                                 decay_epochs=PAPER_EPOCHS, decay_factor=0.5)
  step = int(epoch * steps_per_epoch)
  np.testing.assert_allclose(float(schedule(step)), lr, rtol=1e-6)


def test_lr_scales_linearly_with_batch():
  assert optim.scaled_learning_rate(5e-2, 256, 128) == pytest.approx(0.1)
  assert optim.scaled_learning_rate(5e-2, 32, 128) == pytest.approx(0.0125)


def test_warmup_then_cosine():
  s = optim.make_schedule('cosine', 1.0, steps_per_epoch=10, total_steps=110, warmup_steps=10)
  assert float(s(0)) == 0.0 and float(s(5)) == pytest.approx(0.5)
  assert float(s(10)) == pytest.approx(1.0) and float(s(110)) == pytest.approx(0.0, abs=1e-6)


def test_sgd_weight_decay_is_coupled_l2_on_kernels_only():
  params = {'conv': {'kernel': jnp.full((2, 2), 3.0), 'bias': jnp.full((2,), 3.0)}}
  grads = jax.tree.map(jnp.ones_like, params)
  tx = optim.make_optimizer('sgd', optax.constant_schedule(0.1), momentum=0.6, weight_decay=0.01)
  updates, _ = tx.update(grads, tx.init(params), params)
  # First step: momentum buffer = g + wd * w; update = -lr * that (biases not decayed).
  np.testing.assert_allclose(updates['conv']['kernel'], -0.1 * (1 + 0.01 * 3.0), rtol=1e-6)
  np.testing.assert_allclose(updates['conv']['bias'], -0.1, rtol=1e-6)


def test_frozen_parameters_do_not_move():
  params = {'features': {'kernel': jnp.ones((3, 3))}, 'head': {'kernel': jnp.ones((3, 3))}}
  mask = {'features': {'kernel': False}, 'head': {'kernel': True}}
  tx = optim.make_optimizer('adam', optax.constant_schedule(0.1), weight_decay=0.1, trainable_mask=mask)
  state = tx.init(params)
  for _ in range(3):
    updates, state = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
    params = optax.apply_updates(params, updates)
  assert (params['features']['kernel'] == 1.0).all()
  assert (params['head']['kernel'] < 1.0).all()


def test_unknown_optimizer_and_schedule_are_input_errors():
  with pytest.raises(InputError, match='optimizer'):
    optim.make_optimizer('rmsprop', optax.constant_schedule(0.1))
  with pytest.raises(InputError, match='schedule'):
    optim.make_schedule('linear', 0.1, steps_per_epoch=1, total_steps=1)
