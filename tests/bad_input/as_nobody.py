"""`python tests/bad_input/as_nobody.py MODULE ARGS...`: runs MODULE as __main__ after dropping root to the
`nobody` user, so that a directory without write permission really refuses writes (root ignores permissions).

The interpreter lives under /root (not readable by nobody) in CI, so `setpriv` cannot start it as nobody;
instead this script imports what the entry point needs while still root, then drops privileges in-process.
"""

import os
import runpy
import sys

import jax  # noqa: F401  pylint: disable=unused-import
import overfeat_jax.cli  # noqa: F401  pylint: disable=unused-import
import overfeat_jax.train.loop  # noqa: F401  pylint: disable=unused-import

NOBODY = 65534

if __name__ == '__main__':
  os.setgroups([])
  os.setgid(NOBODY)
  os.setuid(NOBODY)
  module = sys.argv[1]
  sys.argv = [f'{module.rsplit(".", 1)[-1]}.py', *sys.argv[2:]]
  runpy.run_module(module, run_name='__main__', alter_sys=True)
