"""The jitted data-parallel train step and eval step: pure functions, compiled once with shardings.

Batches are sharded on the mesh's 'data' axis and the state is replicated, so XLA inserts the gradient
all-reduce; the same program runs on 1 device, 8 simulated ones or many hosts.
"""

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from overfeat_jax.parallel import mesh as mesh_lib
from overfeat_jax.train.state import TrainState


def all_finite(tree: Any) -> jax.Array:
  """True when every element of every leaf is finite (one fused reduction, no host sync)."""
  return jnp.all(jnp.stack([jnp.isfinite(x).all() for x in jax.tree.leaves(tree)]))


def train_step(state: TrainState, batch: dict[str, jax.Array], *, loss_fn: Callable,
               tx: optax.GradientTransformation, schedule: Callable,
               skip_nonfinite: bool) -> tuple[TrainState, dict[str, jax.Array]]:
  """One SGD step on the global batch. A non-finite loss or gradient leaves params and opt state unchanged.

  Without `skip_nonfinite` the first non-finite step freezes the state for good (the loop stops at its next
  metrics fetch and the last good checkpoint stays intact); with it, bad steps are skipped and counted.
  """
  # Dropout noise of this step, nothing else to carry; the state holds the base key's raw data (`state.py`).
  rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
  grad_fn = jax.value_and_grad(functools.partial(loss_fn, train=True), has_aux=True)
  (loss, aux), grads = grad_fn(state.params, batch, rng)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  finite = jnp.isfinite(loss) & all_finite(grads)
  apply = finite & (skip_nonfinite | (state.first_nonfinite < 0))
  keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(apply, n, o), new, old)
  first_bad = jnp.where((state.first_nonfinite < 0) & ~finite, state.step, state.first_nonfinite)
  new_state = state.replace(
      step=state.step + 1, params=keep(params, state.params), opt_state=keep(opt_state, state.opt_state),
      nonfinite_count=state.nonfinite_count + (~finite).astype(jnp.int32), first_nonfinite=first_bad)
  metrics = {'loss': loss, 'lr': jnp.asarray(schedule(state.step), jnp.float32),
             'grad_norm': optax.tree.norm(grads), **aux}
  return new_state, metrics


def jit_train_step(mesh: Mesh, *, loss_fn: Callable, tx: optax.GradientTransformation, schedule: Callable,
                   skip_nonfinite: bool = False) -> Callable:
  """`step(state, batch) -> (state, metrics)`, compiled once: state replicated and donated, batch on 'data'."""
  rep, data = mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)
  fn = functools.partial(train_step, loss_fn=loss_fn, tx=tx, schedule=schedule, skip_nonfinite=skip_nonfinite)
  return jax.jit(fn, in_shardings=(rep, data), out_shardings=(rep, rep), donate_argnums=0)


def jit_eval_step(mesh: Mesh, eval_step: Callable) -> Callable:
  """`eval(params, batch) -> per-example outputs`, replicated so that every process can read all of them."""
  rep, data = mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)
  return jax.jit(eval_step, in_shardings=(rep, data), out_shardings=rep)


def jit_init_state(mesh: Mesh, init_fn: Callable[[jax.Array], TrainState]) -> Callable:
  """`init(rng) -> TrainState` built directly on the devices, replicated (no host copy of the params)."""
  return jax.jit(init_fn, out_shardings=mesh_lib.replicated(mesh))
