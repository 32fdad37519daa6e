"""Pre-flight for a TPU pod, on any machine: compiles a config's train step and evaluations for a topology.

  python -m overfeat_jax.preflight --config=experiments/configs/fast_imagenet.py --topology=v5e:4x8
  python -m overfeat_jax.preflight --config=experiments/configs/accurate_imagenet.py --topology=v4:2x2x4 \
      --config.batch_size=4096 --config.dtype=bfloat16 --json

Exit status: 0 every program fits, 3 one does not (the line says the largest per-device batch that does),
2 bad input (topology, flags, config). See docs/preflight.md.
"""

import os

os.environ.setdefault('JAX_PLATFORMS', 'cpu')  # never claim this machine's accelerator; libtpu only compiles

import json  # pylint: disable=g-import-not-at-top,wrong-import-position
import sys

from absl import flags
from ml_collections import config_flags

from overfeat_jax import cli
from overfeat_jax.errors import InputError
from overfeat_jax.parallel import topology
from overfeat_jax.parallel.preflight_report import format_text
from overfeat_jax.train.preflight import run_preflight

EXIT_FITS, EXIT_BAD_INPUT, EXIT_DOES_NOT_FIT = 0, 2, 3

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Training config file[:arg].', lock_config=True)
_TOPOLOGY = flags.DEFINE_string('topology', None, 'TPU topology, e.g. v5e:4x8, v4:2x2x4, v5p:2x4x4.')
_CHIP_CONFIG = flags.DEFINE_enum('chip_config', 'auto', topology.CHIP_CONFIGS,
                                 "'megacore': one device per v4/v5p chip (auto: megacore on v4/v5p).")
_NUM_SLICES = flags.DEFINE_integer('num_slices', 1, 'Slices joined over the data-centre network.')
_STAGE = flags.DEFINE_string('stage', None, 'Stage of config.stages to check (default: the first).')
_PROGRAMS = flags.DEFINE_list('programs', ['train', 'eval'], 'Which programs to compile: train, eval.')
_MAX_COMPILES = flags.DEFINE_integer('max_compiles', 8, 'Compiles the search for a fitting batch may use.')
_JSON = flags.DEFINE_bool('json', False, 'Print the result as JSON instead of a table.')


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise InputError(f'unexpected arguments {argv[1:]}; every setting is a --flag or --config.FIELD')
  if _CONFIG.value is None or not _TOPOLOGY.value:
    raise InputError('both --config and --topology are required, e.g. --topology=v5e:4x8')
  tpu_slice = topology.get_slice(_TOPOLOGY.value, _CHIP_CONFIG.value, _NUM_SLICES.value)
  result = run_preflight(_CONFIG.value, tpu_slice, stage=_STAGE.value, programs=tuple(_PROGRAMS.value),
                         max_compiles=_MAX_COMPILES.value)
  print(json.dumps(result, indent=1) if _JSON.value else format_text(result), flush=True)
  if not result['fits']:
    sys.exit(EXIT_DOES_NOT_FIT)


if __name__ == '__main__':
  cli.run(main)
