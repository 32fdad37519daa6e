"""The jitted train step: 8-device data parallel == 1 device, RNG from the step, non-finite handling."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from overfeat_jax.config_files import settings_from_config
from overfeat_jax.parallel import mesh as mesh_lib
from overfeat_jax.tasks import classification
from overfeat_jax.train import loop, optim
from overfeat_jax.train import state as state_lib
from overfeat_jax.train import step as step_lib
from tests.train.helpers import load_config, random_batch


def _run_steps(mesh, task, tx, schedule, batches, seed=0):
  init = step_lib.jit_init_state(mesh, lambda rng: state_lib.create(task.init_params(rng), tx, rng))
  state = init(jax.random.key(seed))
  train = step_lib.jit_train_step(mesh, loss_fn=task.loss_fn, tx=tx, schedule=schedule)
  losses = []
  for batch in batches:
    state, metrics = train(state, mesh_lib.to_global(batch, mesh_lib.batch_sharding(mesh)))
    losses.append(float(metrics['loss']))
  return jax.device_get(state), losses


def test_eight_devices_match_one_device():
  config = load_config('embedded', 'smoke')
  task = classification.make_task(settings_from_config(config, 'classification'))
  schedule = optax.constant_schedule(1e-3)
  tx = optim.make_optimizer('sgd', schedule, momentum=0.6, weight_decay=1e-5)
  batches = [random_batch(i, 16, 64, config.num_classes) for i in range(3)]
  one, losses_one = _run_steps(mesh_lib.make_mesh(jax.devices()[:1]), task, tx, schedule, batches)
  eight, losses_eight = _run_steps(mesh_lib.make_mesh(), task, tx, schedule, batches)
  np.testing.assert_allclose(losses_one, losses_eight, rtol=1e-5)
  diffs = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), one.params, eight.params)
  assert max(jax.tree.leaves(diffs)) < 1e-5
  moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), one.params,
                       jax.device_get(task.init_params(jax.random.key(0))))
  assert max(jax.tree.leaves(moved)) > 1e-4  # the steps did change the parameters
  assert int(eight.step) == 3


def test_dropout_noise_depends_on_the_step_only():
  config = load_config('embedded', 'smoke')
  task = classification.make_task(settings_from_config(config, 'classification'))
  params = task.init_params(jax.random.key(0))
  batch = jax.tree.map(jnp.asarray, random_batch(0, 4, 64, config.num_classes))
  key = jax.random.key(3)
  loss = lambda step: float(task.loss_fn(params, batch, jax.random.fold_in(key, step), train=True)[0])
  assert loss(5) == loss(5) and loss(5) != loss(6)


def _toy(skip_nonfinite):
  """A linear model whose loss is NaN when the batch says so."""
  loss_fn = lambda params, batch, rng, *, train: ((params['w'] * batch['x']).sum(axis=1).mean(), {})
  schedule = optax.constant_schedule(0.1)
  tx = optax.sgd(schedule)
  mesh = mesh_lib.make_mesh()
  state = state_lib.create({'w': jnp.ones((3,))}, tx, jax.random.key(0))
  step = step_lib.jit_train_step(mesh, loss_fn=loss_fn, tx=tx, schedule=schedule, skip_nonfinite=skip_nonfinite)
  states = []
  for bad in (False, True, False):
    x = np.full((8, 3), np.nan if bad else 1.0, np.float32)
    state, _ = step(state, mesh_lib.to_global({'x': x}, mesh_lib.batch_sharding(mesh)))
    states.append(jax.device_get(state))
  return states


def test_skip_nonfinite_skips_the_update_and_counts_it():
  s1, s2, s3 = _toy(skip_nonfinite=True)
  np.testing.assert_allclose(s1.params['w'], 0.9)
  np.testing.assert_array_equal(s2.params['w'], s1.params['w'])
  np.testing.assert_allclose(s3.params['w'], 0.8, rtol=1e-6)
  assert (int(s3.nonfinite_count), int(s3.first_nonfinite), int(s3.step)) == (1, 1, 3)


def test_nonfinite_freezes_the_state_and_the_loop_stops_naming_the_step():
  s1, s2, s3 = _toy(skip_nonfinite=False)
  np.testing.assert_array_equal(s3.params['w'], s1.params['w'])  # frozen at the last good parameters
  assert int(s3.first_nonfinite) == 1
  run = types.SimpleNamespace(cadence=types.SimpleNamespace(skip_nonfinite=False),
                              task=types.SimpleNamespace(name='classification'))
  with pytest.raises(loop.NonFiniteLossError, match='non-finite at step 1;'):
    loop.check_finite(run, s3)
  loop.check_finite(run, s1)  # no error before it happened


def test_state_keeps_the_keys_raw_data_as_legacy_checkpoints_did():
  # Checkpoints hold `state.rng` as plain uint32 data, the very array a legacy `PRNGKey(seed)` was, so runs
  # saved before typed keys restore into the same abstract state and continue with the same dropout noise.
  tx = optax.sgd(0.1)
  typed = state_lib.create({'w': jnp.ones((3,))}, tx, jax.random.key(7))
  raw = state_lib.create({'w': jnp.ones((3,))}, tx, jax.random.key_data(jax.random.key(7)))
  assert typed.rng.dtype == jnp.uint32 and typed.rng.shape == (2,)
  np.testing.assert_array_equal(typed.rng, raw.rng)
  np.testing.assert_array_equal(typed.rng, [0, 7])  # threefry's raw key for seed 7: what PRNGKey(7) returned
