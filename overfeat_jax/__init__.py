"""OverFeat in JAX/Flax.

`load_pretrained(path)` loads an exported network (`python -m overfeat_jax.export`) in one call. Importing the
package itself stays light: everything is imported on first use (no training code, no optax, no TensorFlow).
"""

from typing import Any


def load_pretrained(path: str, *, with_regressor: bool = False) -> tuple[Any, ...]:
  """(model, params) of an exported artifact directory; with `with_regressor`, also (regressor, its params).

  Reads format version 2 (`params.safetensors`) and version 1 (`params.npz`) artifacts (docs/export.md); the
  params are float32 numpy arrays in the flax tree `{'features': {'conv1': {'kernel', 'bias'}, ...},
  'classifier': {...}}`.

  `model` is an `overfeat_jax.models.OverFeat`; `model.apply({'params': params}, images)` takes images
  [B, H, W, 3] with pixel values 0..255 of any size at least the training size, and returns the class score map
  [B, h, w, num_classes] of every window (1 x 1 at the training size), as the original did. The regressor (a
  `BoxRegressor`, present for localization and detection exports) reads `model.pooled(images)`.

  Raises:
    overfeat_jax.errors.InputError: not an artifact, an unknown format version, a checksum or shape that does
      not match, or an unreadable parameter file.
  """
  from overfeat_jax.checkpoint import export  # pylint: disable=g-import-not-at-top
  config, spec, params = export.read_artifact(path)
  model = spec.classifier()
  backbone = params['backbone'] if 'backbone' in params else params
  if not with_regressor:
    return model, backbone
  regressor = spec.regressor()
  if regressor is None:
    from overfeat_jax.errors import InputError  # pylint: disable=g-import-not-at-top
    raise InputError(f'{path} is a {config["stage"]} export without a box regressor.')
  return model, backbone, regressor, params['regressor']
