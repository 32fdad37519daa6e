"""The one place an OverFeat classifier or box regressor is built from plain settings (names and numbers).

The tasks (`tasks.classification.make_model`, from `settings.ModelSettings`), the export artifact
(`checkpoint.export.NetworkSpec`) and `classify` all build their modules here, so a geometry name, a width
divisor and a dtype name mean the same network everywhere.
"""

import jax.numpy as jnp

from overfeat_jax.errors import InputError
from overfeat_jax.models.geometry import get_geometry
from overfeat_jax.models.heads import BoxRegressor
from overfeat_jax.models.overfeat import OverFeat

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}  # the compute dtypes, by the name settings use


def dtype_of(name: str) -> jnp.dtype:
  """The compute dtype named `name`; InputError for another name."""
  if name not in DTYPES:
    raise InputError(f'dtype must be one of {tuple(DTYPES)}, got {name!r}.')
  return DTYPES[name]


def classifier(geometry: str, width_divisor: int, num_classes: int, *, dtype: str = 'float32',
               dropout_rate: float = 0.5, init_scheme: str = 'paper') -> OverFeat:
  """OverFeat of the registered `geometry` with every width divided by `width_divisor` and `num_classes`
  outputs. Raises InputError for an unknown geometry or dtype name."""
  return OverFeat(get_geometry(geometry, width_divisor), num_classes=num_classes, dropout_rate=dropout_rate,
                  dtype=dtype_of(dtype), init_scheme=init_scheme)


def regressor(geometry: str, width_divisor: int, num_outputs: int, hidden: tuple[int, ...], *,
              dtype: str = 'float32', init_scheme: str = 'paper') -> BoxRegressor:
  """The box regressor (`num_outputs` boxes of 4 edges per window: 1 single-class, C per-class) on the pooled
  layer 5 of that network."""
  return BoxRegressor(get_geometry(geometry, width_divisor), num_outputs=num_outputs, hidden=tuple(hidden),
                      dtype=dtype_of(dtype), init_scheme=init_scheme)
