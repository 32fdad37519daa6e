"""Trains and evaluates OverFeat: flags -> `train.loop.train_and_evaluate(config, workdir)`.

  python -m overfeat_jax.main                    # the embedded CPU demo (overfeat_jax.configs.embedded)
  python -m overfeat_jax.main --config=experiments/configs/fast_imagenet.py --workdir=/tmp/fast \
      --config.batch_size=256
"""

import sys

from absl import flags, logging
from ml_collections import config_flags

from overfeat_jax import cli, config_files

try:  # with a default file, the config is loaded (and --config.FIELD applied) right here, at import
  # The default is named by module path, so it is found wherever the package is installed (a wheel too).
  _CONFIG = config_flags.DEFINE_config_file('config', config_files.module_file(config_files.DEFAULT_CONFIG),
                                            'Training config file[:arg].', lock_config=True)
except Exception as e:  # pylint: disable=broad-except  (a bad override or config file: user input)
  cli.bad_flags(e)
_WORKDIR = flags.DEFINE_string('workdir', './workdir/demo', 'Checkpoints, TensorBoard events, metrics.json.')
_COORDINATOR = flags.DEFINE_string('coordinator_address', None, 'HOST:PORT of process 0 (multi-process runs).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Number of processes (multi-process runs).')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process index (multi-process runs).')


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise cli.InputError(f'unexpected arguments {argv[1:]}; every setting is a --flag or --config.FIELD')
  from overfeat_jax.parallel import distributed  # pylint: disable=g-import-not-at-top
  distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  from overfeat_jax.train import loop  # pylint: disable=g-import-not-at-top  (after initialize)
  results = loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  import jax  # pylint: disable=g-import-not-at-top
  stopped = interrupted(results)
  if stopped:
    cli.print_error(stopped, 'interrupted')
    sys.exit(INTERRUPTED)
  for stage, metrics in results.items():
    shown = headline(metrics)
    logging.info('%s: %s', stage, shown)
    if jax.process_index() == 0:
      print(f'{stage}: {shown}' if shown else f'{stage}: stopped early ({metrics})', flush=True)


INTERRUPTED = cli.INTERRUPTED
_INTERRUPTED_NOTE = '(Ctrl-C) nothing saved since the last checkpoint; rerun the same command to resume from it'


def interrupted(results: dict) -> str | None:
  """The one line (after `main.py: interrupted: `) for a run that a Ctrl-C stopped in the training loop
  (`loop.Preemption` saved the step it reached), or None (finished, or stopped by a SIGTERM: exit 0, as a
  preemption that a scheduler resumes later)."""
  for stage, metrics in results.items():
    if metrics.get('preempted') and metrics.get('signal') == 'SIGINT':
      return f'saved {stage} step {metrics["saved_at"]}; rerun the same command to resume'
  return None


def headline(metrics: dict) -> str:
  """The stage's headline numbers: every `*_error` (top-5, localization error, ...) and detection `*mAP`."""
  keys = [k for k in sorted(metrics) if k.endswith('_error') or k.endswith('mAP')]
  return ', '.join(f'{k} {metrics[k]:.4f}' for k in keys)


def check_flags(argv: list[str]) -> list[str]:
  """Parses the flags once up front: a bad `--config.FIELD` (unknown, wrong type) or a config file that does
  not load or raises becomes one line, exit 2 (`cli.parse_flags`).

  The parsed values stay; `cli.run` (absl) then parses only the leftover arguments, because parsing
  `--config.FIELD` twice would define its override flag twice.
  """
  return cli.parse_flags(argv)


def run_interruptible() -> None:
  """`cli.run(main)`, where a Ctrl-C outside the training loop (data build, compile, evaluation; a second
  Ctrl-C in the loop) prints one line and exits 130, with no traceback and no save (the last checkpoint is
  kept; rerunning the command resumes from it)."""
  try:
    sys.argv = check_flags(sys.argv)
  except KeyboardInterrupt:
    cli.exit_interrupted(_INTERRUPTED_NOTE)
  cli.run(main, interrupted=_INTERRUPTED_NOTE)


if __name__ == '__main__':
  run_interruptible()
