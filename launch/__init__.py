"""Launchers: `python -m launch.local` (multi-process on one machine), `launch.slurm`, `launch.tpu_pod`."""
