"""The OverFeat networks: geometry (as data), Flax modules, the box regressor, the release weight layout."""

from overfeat_jax.models.geometry import ACCURATE, FAST, GEOMETRIES, SMALL, ConvStage, Geometry, get_geometry
from overfeat_jax.models.heads import BoxRegressor
from overfeat_jax.models.overfeat import OverFeat, init_params, layer_outputs
