r"""Exports a trained network for use outside this project: parameters + config, no optimizer state, no code.

  python -m overfeat_jax.export --workdir=/tmp/demo --output=/tmp/demo_classifier
  python -m overfeat_jax.export --workdir=/tmp/demo --stage=localization --output=/tmp/demo_localizer \
      --config=experiments/configs/embedded.py
  python -m overfeat_jax.export --workdir=/tmp/fast --format=release --output=/tmp/net_weight_0

`--format=artifact` (default) writes a directory that `overfeat_jax.load_pretrained(PATH)` reads (format:
`overfeat_jax.checkpoint.export`, docs/export.md). `--format=release` writes the original release's raw weight
file (fast or accurate network at full width, 1000 classes). The network is recognised from the checkpoint's
parameter shapes; `--config` (the training config) adds the class names of the embedded dataset, the
evaluation preprocessing and the compute dtype, and is checked against the checkpoint.
"""

import dataclasses
import os
from typing import Any

from absl import flags
from ml_collections import config_flags

from overfeat_jax import cli
from overfeat_jax.checkpoint import export as export_lib
from overfeat_jax.errors import InputError

_WORKDIR = flags.DEFINE_string('workdir', None, 'Training workdir (holds <stage>/checkpoints).')
_STAGE = flags.DEFINE_enum('stage', 'classification', list(export_lib.STAGES), 'Which stage to export.')
_OUTPUT = flags.DEFINE_string('output', None, 'Artifact directory, or release weight file, to write.')
_FORMAT = flags.DEFINE_enum('format', 'artifact', ['artifact', 'release'], 'artifact: config.json + '
                            'params.npz; release: the original raw float32 weight layout.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).')
_CLASS_NAMES = flags.DEFINE_string('class_names', None, 'Text file, one class name per line, in output order.')
_CONFIG = config_flags.DEFINE_config_file('config', None, 'The training config (optional; see above).')


def read_names(path: str) -> list[str]:
  with open(path, encoding='utf-8') as f:
    names = [line.strip() for line in f if line.strip()]
  if not names:
    raise InputError(f'class names file {path} is empty.')
  return names


def config_details(config: Any, spec: export_lib.NetworkSpec, stage: str) -> tuple[Any, list[str] | None, dict]:
  """(spec with the config's dtype, class names if the config's dataset has them, preprocessing)."""
  model = config.model
  if (model.geometry, int(model.width_divisor)) != (spec.geometry, spec.width_divisor):
    raise InputError(f'--config describes {model.geometry}/{model.width_divisor} but the checkpoint holds '
                     f'{spec.geometry}/{spec.width_divisor}.')
  spec = dataclasses.replace(spec, dtype=str(config.dtype))
  names = None
  if str(config.data.name).startswith('embedded'):
    from overfeat_jax.data import draw  # pylint: disable=g-import-not-at-top
    names = list(draw.CLASS_NAMES[:int(config.num_classes)])
  pre = {'dataset': str(config.data.name), 'crop_size': int(config.crop_size),
         'eval_resize': int(config.eval.resize), 'eval_scales': [list(s) if isinstance(s, (tuple, list)) else
                                                                 [int(s), int(s)] for s in config.eval.scales],
         'eval_flips': bool(config.eval.flips), 'eval_fine_stride': bool(config.eval.fine)}
  if stage != 'classification' and 'box' in config:
    pre['box'] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.box.to_dict().items()}
  return spec, names, pre


def export(workdir: str, stage: str, output: str, fmt: str, step: int | None, config: Any = None,
           class_names_file: str | None = None) -> str:
  """Reads the checkpoint, writes the artifact or release file; returns a one-line summary."""
  step, params = export_lib.load_trained(workdir, stage, step)
  spec = export_lib.infer_network(params)
  names, pre = None, {}
  if config is not None:
    spec, names, pre = config_details(config, spec, stage)
  if class_names_file:
    names = read_names(class_names_file)
  if fmt == 'release':
    return export_release(params, spec, output)
  cfg = export_lib.build_config(spec, stage=stage, class_names=names, preprocessing=pre,
                                source={'workdir': os.path.abspath(workdir), 'stage': stage, 'step': step})
  path = export_lib.write_artifact(output, params, cfg)
  return f'wrote {path}: {spec.geometry}/{spec.width_divisor} {stage}, {spec.num_classes} outputs, step {step}'


def export_release(params: Any, spec: export_lib.NetworkSpec, output: str) -> str:
  from overfeat_jax.models import release_weights  # pylint: disable=g-import-not-at-top
  if spec.geometry not in release_weights.RELEASE_FILES or spec.width_divisor != 1 or \
      spec.num_classes != release_weights.RELEASE_CLASSES:
    raise InputError(f'--format=release needs the fast or accurate network at full width with 1000 classes; '
                     f'this checkpoint is {spec.geometry}/{spec.width_divisor} with {spec.num_classes} outputs '
                     '(use --format=artifact).')
  backbone = params['backbone'] if 'backbone' in params else params
  geometry = spec.classifier().geometry
  size = release_weights.save_release_weights(backbone, geometry, output)
  return f'wrote {os.path.abspath(output)}: {size} bytes, the {spec.geometry} release layout'


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise InputError(f'unexpected arguments {argv[1:]}')
  if not _WORKDIR.value or not _OUTPUT.value:
    raise InputError('--workdir and --output are required.')
  print(export(_WORKDIR.value, _STAGE.value, _OUTPUT.value, _FORMAT.value, _STEP.value, _CONFIG.value,
               _CLASS_NAMES.value), flush=True)


if __name__ == '__main__':
  cli.run(main)
