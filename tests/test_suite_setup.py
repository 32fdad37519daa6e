"""The test session's own set-up (tests/conftest.py, tests/xla_flags.py): what keeps the suite within its time."""

import os
from pathlib import Path

import jax

from tests import conftest
from tests import xla_flags

REPO = Path(__file__).resolve().parents[1]


def test_the_session_compiles_cheaply_on_eight_cpu_devices():
  flags = os.environ['XLA_FLAGS'].split()
  assert flags[0] == xla_flags.FAST_COMPILE and flags[-1] == '--xla_force_host_platform_device_count=8'
  assert jax.device_count() == 8 and jax.devices()[0].platform == 'cpu'


def test_xla_flags_keep_the_cheap_compile_first_so_a_later_flag_wins():
  assert xla_flags.xla_flags() == xla_flags.FAST_COMPILE
  assert xla_flags.xla_flags(2, ' --foo ') == (
      '--xla_backend_optimization_level=0 --foo --xla_force_host_platform_device_count=2')


def test_heavy_files_named_for_the_ordering_exist():
  """A moved or renamed file would silently lose its place at the front of the xdist queue."""
  missing = [p for p in conftest.HEAVY_FILES if not (REPO / p).is_file()]
  assert not missing, missing
