"""Stands in for `overfeat_jax.preflight` in launcher tests: logs its argv, exits $FAKE_PREFLIGHT_EXIT."""

import json
import os
import sys

if __name__ == '__main__':
  with open(os.environ['FAKE_PREFLIGHT_LOG'], 'a') as f:
    f.write(json.dumps(sys.argv[1:]) + '\n')
  sys.exit(int(os.environ.get('FAKE_PREFLIGHT_EXIT', '0')))
