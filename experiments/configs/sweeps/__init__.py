"""The sweep definitions (`python -m overfeat_jax.sweep --sweep=<file>`), shipped in the package as
`overfeat_jax.configs.sweeps` so an installed wheel has them (docs/sweeps.md); read by file path, never imported
for their contents."""
