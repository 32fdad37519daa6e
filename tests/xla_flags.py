"""XLA_FLAGS for the test session and the processes it starts: CPU devices, and compile without LLVM's
backend optimisations.

Why `--xla_backend_optimization_level=0`: the suite is dominated by XLA compiling (a smoke training process spent
about 85 % of its CPU compiling), and at level 0 the compile costs far less while the programs compute the same
functions (the same graph, less optimised machine code; each step runs about 2x slower, which the short test runs
do not feel). Measured on the 2-core CPU at load 10-15: one smoke classification run 41 -> 18 CPU-s with identical
metrics; tests/inference/test_dense.py with tests/tasks/test_detection.py 187 -> 91 CPU-s (17 passed both ways).
Every process of one test gets the same flags, so bit-identical comparisons between runs (resume, multi-host)
compare like with like. A flag given later in XLA_FLAGS wins, so a user's own level still applies.
"""

FAST_COMPILE = '--xla_backend_optimization_level=0'


def xla_flags(devices: int | None = None, existing: str = '') -> str:
  """XLA_FLAGS with FAST_COMPILE first, then `existing`, then `devices` simulated CPU devices (if given)."""
  parts = [FAST_COMPILE, existing.strip()]
  if devices is not None:
    parts.append(f'--xla_force_host_platform_device_count={devices}')
  return ' '.join(p for p in parts if p)
