"""The whole training state as one pytree, so that a checkpoint of it is everything a resumed run needs."""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class TrainState:
  """params, optimizer state, step, base RNG key and the non-finite bookkeeping.

  Attributes:
    step: int32 scalar, updates applied so far (skipped updates count as steps: the data moved on).
    params: model parameters (float32, whatever the compute dtype).
    opt_state: optax state.
    rng: the base key's raw data (uint32, `jax.random.key_data` of a typed key): step t uses
      `fold_in(wrap_key_data(rng), t)`, so no RNG state has to be carried; plain data, so checkpoints hold an
      ordinary array (and those written when this was a legacy `PRNGKey` restore unchanged).
    nonfinite_count: int32, steps whose loss or gradient was not finite (their update was not applied).
    first_nonfinite: int32, the first such step, -1 if none (the loop stops there unless skipping).
  """
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array
  nonfinite_count: jax.Array
  first_nonfinite: jax.Array


def create(params: Any, tx, rng: jax.Array) -> TrainState:
  """A fresh state at step 0 (jit it with `out_shardings` to build it directly on the devices).

  `rng` is a typed key (`jax.random.key(seed)`); the state keeps its raw data. Raw key data is accepted as is.
  """
  if jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key):
    rng = jax.random.key_data(rng)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=rng,
                    nonfinite_count=jnp.zeros((), jnp.int32), first_nonfinite=jnp.full((), -1, jnp.int32))
