r"""Exports a trained network for use outside this project: parameters + config, no optimizer state, no code.

  python -m overfeat_jax.export --workdir=/tmp/demo --output=/tmp/demo_classifier
  python -m overfeat_jax.export --workdir=/tmp/demo --stage=localization --output=/tmp/demo_localizer \
      --config=experiments/configs/embedded.py
  python -m overfeat_jax.export --workdir=/tmp/fast --format=release --output=/tmp/net_weight_0

`--format=artifact` (default) writes a directory that `overfeat_jax.load_pretrained(PATH)` reads (format:
`overfeat_jax.checkpoint.export`, docs/export.md). `--format=release` writes the original release's raw weight
file (fast or accurate network at full width, 1000 classes). The network is recognised from the checkpoint's
parameter shapes; the training config adds the class names of the embedded dataset, the evaluation
preprocessing and the compute dtype, and is checked against the checkpoint: `--config`, or by default the
workdir's own `config.json` (the resolved config the trainer saved), as `predict` reads it. A stage folder
(`WORKDIR/classification`, or its `checkpoints`) given as --workdir is refused with the command that exports it.
"""


from absl import flags
from ml_collections import config_flags

from overfeat_jax import cli
from overfeat_jax import config_files
from overfeat_jax.checkpoint import export as export_lib
from overfeat_jax.config_files import settings_from_config
from overfeat_jax.errors import InputError

_WORKDIR = flags.DEFINE_string('workdir', None, 'Training workdir (holds <stage>/checkpoints).')
_STAGE = flags.DEFINE_enum('stage', 'classification', list(export_lib.STAGES), 'Which stage to export.')
_OUTPUT = flags.DEFINE_string('output', None, 'Artifact directory, or release weight file, to write.')
_FORMAT = flags.DEFINE_enum('format', 'artifact', ['artifact', 'release'], 'artifact: config.json + '
                            'params.safetensors; release: the original raw float32 weight layout.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).')
_CLASS_NAMES = flags.DEFINE_string('class_names', None, 'Text file, one class name per line, in output order.')
_CONFIG = config_flags.DEFINE_config_file('config', None, 'The training config (default: WORKDIR/config.json, '
                                          'when the workdir has one; see above).')


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise InputError(f'unexpected arguments {argv[1:]}')
  if not _WORKDIR.value or not _OUTPUT.value:
    raise InputError('--workdir and --output are required.')
  stage_folder = export_lib.stage_folder_of(_WORKDIR.value)
  if stage_folder is not None:  # its checkpoints, but not the workdir's config.json (class names, preprocessing)
    parent, stage = stage_folder
    raise InputError(f'{_WORKDIR.value} is a stage folder (the {stage} checkpoints of the training workdir '
                     f'{parent}), not a training workdir; run with --workdir={parent} --stage={stage} (the workdir '
                     'holds the training config: class names, preprocessing).')
  config = _CONFIG.value
  if config is None:  # the workdir's own config.json, when it trained this stage
    saved = config_files.load_config(_WORKDIR.value)
    config = saved if saved is not None and _STAGE.value in saved.stages else None
  settings = settings_from_config(config, _STAGE.value) if config is not None else None
  print(export_lib.export_workdir(_WORKDIR.value, _STAGE.value, _OUTPUT.value, _FORMAT.value, _STEP.value, settings,
                                  _CLASS_NAMES.value), flush=True)


if __name__ == '__main__':
  cli.run(main)
