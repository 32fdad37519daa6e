r"""Writes the embedded detection data as a PASCAL VOC folder and as a COCO instances file; prints both paths.

  python -m overfeat_jax.write_folders --out=/tmp/embedded_det_folders     # the det view: 4,000 + 500
  python -m overfeat_jax.write_folders --out=/tmp/small --train_size=64 --test_size=16

Writes `OUT/voc/...` and `OUT/coco/...` (the layout: `overfeat_jax.data.write_folders`, the library half), to
build back with `python -m overfeat_jax.build_dataset --dataset=voc_folder|coco_json` (docs/own_data.md).
Exit status: 0 written, 2 bad input (one line).
"""

from absl import flags

from overfeat_jax import cli
from overfeat_jax.data import write_folders
from overfeat_jax.errors import InputError

_OUT = flags.DEFINE_string('out', None, 'Folder to write voc/ and coco/ into.')
_TRAIN_SIZE = flags.DEFINE_integer('train_size', None, 'Training images (default: the det view\'s 4,000).',
                                   lower_bound=1)
_TEST_SIZE = flags.DEFINE_integer('test_size', None, 'Test images (default: the det view\'s 500).', lower_bound=1)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise InputError(f'unexpected arguments: {" ".join(argv[1:])}')
  if not _OUT.value:
    raise InputError('--out is required')
  options = {k: v for k, v in (('train_size', _TRAIN_SIZE.value), ('test_size', _TEST_SIZE.value)) if v is not None}
  for path in write_folders.write_embedded_det(_OUT.value, **options):
    print(path)


if __name__ == '__main__':
  cli.run(main)
