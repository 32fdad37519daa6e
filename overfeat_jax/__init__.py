"""OverFeat in JAX/Flax."""
