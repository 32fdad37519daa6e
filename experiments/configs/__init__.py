"""The training configs (ml_collections files), shipped in the package as `overfeat_jax.configs`.

This folder is linked into the package as overfeat_jax/configs so that a wheel carries the configs and the
default config is named by module path (`overfeat_jax.config_files.DEFAULT_CONFIG`). Configs are still loaded
by file path (`--config=experiments/configs/embedded.py`); nothing imports this package for its contents.
"""
