"""Learning-rate schedules and optimizers (optax), with weight decay on kernels and frozen parameters.

Weight decay is the paper's L2 regularisation, coupled: the gradient of 0.5 * wd * |w|^2 (= wd * w) is added
to the loss gradient before momentum (`optax.add_decayed_weights` ahead of `optax.sgd`), which is what "L2 weight
decay 1e-5" with plain SGD meant in 2013 Torch. It applies to kernels only; biases are not decayed. Frozen
parameters (a later stage's fixed layers 1-5) get `optax.set_to_zero()` through `optax.multi_transform`, so
they stay bit for bit unchanged and carry no optimizer state.
"""

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from overfeat_jax.errors import InputError

Schedule = Callable[[jax.Array], jax.Array]
OPTIMIZERS = ('sgd', 'adam')
SCHEDULES = ('piecewise', 'cosine', 'constant')


def scaled_learning_rate(base_lr: float, batch_size: int, base_batch_size: int) -> float:
  """The linear scaling rule: the paper's lr is for batch 128; a batch twice as big gets twice the lr."""
  return base_lr * batch_size / base_batch_size


def piecewise_schedule(peak_lr: float, steps_per_epoch: int, decay_epochs: Sequence[float],
                       decay_factor: float) -> Schedule:
  """lr multiplied by `decay_factor` from the first step of each epoch in `decay_epochs` (paper: 30, 50, ...).

  `optax.piecewise_constant_schedule` applies a scale from its boundary step on (count >= boundary).
  """
  boundaries = {int(round(e * steps_per_epoch)): decay_factor for e in decay_epochs}
  return optax.piecewise_constant_schedule(peak_lr, boundaries)


def make_schedule(kind: str, peak_lr: float, *, steps_per_epoch: int, total_steps: int,
                  decay_epochs: Sequence[float] = (), decay_factor: float = 0.5,
                  warmup_steps: int = 0) -> Schedule:
  """'piecewise' (the paper's), 'cosine' (to zero at `total_steps`) or 'constant', after a linear warm-up."""
  if kind == 'piecewise':
    main = piecewise_schedule(peak_lr, steps_per_epoch, decay_epochs, decay_factor)
  elif kind == 'cosine':
    main = optax.cosine_decay_schedule(peak_lr, max(total_steps - warmup_steps, 1))
  elif kind == 'constant':
    main = optax.constant_schedule(peak_lr)
  else:
    raise InputError(f'unknown schedule {kind!r}; choose one of {SCHEDULES}.')
  if warmup_steps <= 0:
    return main
  warmup = optax.linear_schedule(0.0, peak_lr, warmup_steps)
  return optax.join_schedules([warmup, main], [warmup_steps])


def kernel_mask(params: Any) -> Any:
  """True for kernels (ndim > 1), False for biases: the leaves weight decay applies to."""
  return jax.tree.map(lambda p: jnp.ndim(p) > 1, params)


def make_optimizer(name: str, schedule: Schedule, *, momentum: float = 0.0, weight_decay: float = 0.0,
                   trainable_mask: Any = None) -> optax.GradientTransformation:
  """SGD (heavy-ball momentum, coupled L2 decay) or Adam (decoupled decay = AdamW); frozen leaves untouched.

  Args:
    trainable_mask: a tree of bools like the params (False = frozen), or None when everything trains.
  """
  if name == 'sgd':
    tx = optax.chain(optax.add_decayed_weights(weight_decay, mask=kernel_mask),
                     optax.sgd(schedule, momentum=momentum or None))
  elif name == 'adam':
    tx = optax.adamw(schedule, weight_decay=weight_decay, mask=kernel_mask)
  else:
    raise InputError(f'unknown optimizer {name!r}; choose one of {OPTIMIZERS}.')
  if trainable_mask is None:
    return tx
  labels = jax.tree.map(lambda t: 'train' if t else 'frozen', trainable_mask)
  return optax.multi_transform({'train': tx, 'frozen': optax.set_to_zero()}, labels)
