r"""Ablation sweeps of the evaluation procedure: a Table-2-shaped Markdown table and an error-vs-cost plot.

  python -m overfeat_jax.sweep --sweep=experiments/configs/sweeps/classification_embedded.py --workdir=/tmp/demo
  python -m overfeat_jax.sweep --sweep=experiments/configs/sweeps/classification_embedded.py --workdir=/tmp/demo \
      --checkpoints=/tmp/demo_seed1,/tmp/demo_seed2 --output=/tmp/sweep_cls --sweep.max_examples=200

Networks: `--workdir` (a training workdir, its stage's latest checkpoint, or an exported artifact) first, then
each of `--checkpoints`. An artifact as `--workdir` is evaluated on the sweep's train_config's data and needs
`--output`. Results: OUTPUT/points/*.json (one per finished point: a rerun recomputes nothing), OUTPUT/table.md,
OUTPUT/records.json and OUTPUT/cost.png. A point that cannot run (a scale below a network's minimum input, an
ensemble of different class counts, a network given twice) is refused with one line before any is evaluated.
Documentation: docs/sweeps.md.
"""

import os

from absl import flags, logging
from ml_collections import config_flags

from overfeat_jax import cli
from overfeat_jax.errors import InputError

_SWEEP = config_flags.DEFINE_config_file('sweep', None, 'Sweep definition (experiments/configs/sweeps/*.py).')
_WORKDIR = flags.DEFINE_string('workdir', None, 'The first network: a training workdir or an exported artifact '
                               '(an artifact: the train_config\'s data, and --output is required).')
_CHECKPOINTS = flags.DEFINE_list('checkpoints', [], 'More networks (workdirs or artifacts), comma separated.')
_OUTPUT = flags.DEFINE_string('output', None, 'Results folder (default WORKDIR/sweeps/<sweep name>; required when '
                              '--workdir is an artifact).')
_PLOT = flags.DEFINE_bool('plot', True, 'Write the error-vs-cost plot (matplotlib).')


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise InputError(f'unexpected arguments {argv[1:]}')
  if _SWEEP.value is None or not _WORKDIR.value:
    raise InputError('--sweep and --workdir are required.')
  from overfeat_jax.sweeps import grid, report, runner  # pylint: disable=g-import-not-at-top
  sweep = grid.Sweep.from_dict(_SWEEP.value.to_dict())  # the config read once, here: plain values below
  name = os.path.splitext(os.path.basename(config_flags.get_config_filename(flags.FLAGS['sweep'])))[0]
  output = runner.output_folder(_OUTPUT.value, _WORKDIR.value, name)
  networks = [runner.load_network(p, sweep.task) for p in [_WORKDIR.value, *_CHECKPOINTS.value]]
  setup = runner.workdir_setup(sweep, _WORKDIR.value, log=_log)
  records, stats = runner.run_sweep(sweep, networks, output, setup=setup, log=_log)
  from overfeat_jax import storage  # pylint: disable=g-import-not-at-top
  storage.write_json_atomic(os.path.join(output, 'records.json'), records)
  table = report.markdown_table(records)
  storage.write_atomic(os.path.join(output, 'table.md'), table)
  print(table, flush=True)
  if _PLOT.value:
    print('plot:', report.plot_cost(records, os.path.join(output, 'cost.png')))
  print(f'{stats["computed"]} points evaluated, {stats["cached"]} read from {output}/points', flush=True)


def _log(line: str) -> None:
  logging.info('%s', line)
  print(line, flush=True)


if __name__ == '__main__':
  cli.run(main)
