r"""Builds one of the project's tfds datasets from local files (no network) and prints its build report.

  python -m overfeat_jax.build_dataset --dataset=ilsvrc2012_cls_loc --manual_dir=/data/imagenet \
      --data_dir=/data/tfds --config=resized256
  python -m overfeat_jax.build_dataset --dataset=ilsvrc2014_det --manual_dir=/data/ILSVRC2014 \
      --data_dir=/data/tfds
  python -m overfeat_jax.build_dataset --dataset=embedded --data_dir=/data/tfds --config=cls_loc
  python -m overfeat_jax.build_dataset --dataset=voc_folder --manual_dir=/data/my_photos --name=my_photos \
      --data_dir=/data/tfds            # also coco_json and image_folder: docs/own_data.md

Exit status: 0 built (or found built from the same files), 2 bad input (one line: a missing or empty
--manual_dir, an unknown dataset or config, an own-data folder that changed since its build without
--rebuild). The builders themselves are the library `overfeat_jax.data.build` (docs/data_imagenet.md).
"""

import os

from absl import flags

from overfeat_jax import cli
from overfeat_jax.data import build as build_lib
from overfeat_jax.errors import InputError

_DATASET = flags.DEFINE_enum('dataset', None, list(build_lib.DATASETS), 'Which dataset to build.')
_MANUAL_DIR = flags.DEFINE_string('manual_dir', None,
                                  'Folder holding the ImageNet files (see docs/data_imagenet.md).')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'tfds data_dir to write the dataset into.')
_CONFIG = flags.DEFINE_string('config', None, 'Builder config: resized256 | original (ImageNet; default '
                              'resized256), or the embedded view. Default: the dataset\'s default.')
_NAME = flags.DEFINE_string('name', None, 'Own data (voc_folder, coco_json, image_folder): the dataset name '
                            '(lower case, digits, _); default: the folder\'s name. Train with '
                            '--config.data.name=<dataset>/<name>.')
_SMALLER_SIDE = flags.DEFINE_integer('smaller_side', 256, 'Own data: shrink images whose smaller side is larger '
                                     'to this (boxes scaled); 0 keeps every size.', lower_bound=0)
_CLASSES = flags.DEFINE_string('classes', None, 'Own data (voc_folder, image_folder): a file of one class name '
                               'per line, in label order; default: the names found, sorted.')

_REBUILD = flags.DEFINE_bool('rebuild', False, 'Own data: build the dataset of this --name anew even if it is '
                             'built (the old records stay until the new ones are complete). Without it, a '
                             'build from a changed folder or with other options stops with an error.')


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise InputError(f'unexpected arguments: {" ".join(argv[1:])}')
  if not _DATASET.value or not _DATA_DIR.value:
    raise InputError('--dataset and --data_dir are required')
  builder = build_lib.build(_DATASET.value, _DATA_DIR.value, _MANUAL_DIR.value, _CONFIG.value, name=_NAME.value,
                            smaller_side=_SMALLER_SIDE.value, classes=_CLASSES.value, rebuild=_REBUILD.value)
  print('\n'.join(build_lib.summary(os.fspath(builder.data_dir))))


if __name__ == '__main__':
  cli.run(main)
