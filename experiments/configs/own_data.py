"""Detection on your own labelled photos (a VOC folder or a COCO file), started from a trained classifier.

The recipe, as measured (docs/own_data.md, BENCHMARKS.md): the embedded demo's classifier and localization
stages (`embedded.py`, unchanged), then its detection stage (`embedded_detection.py`) reading a dataset built
by `voc_folder` or `coco_json` instead of the embedded `det` view: the embedded det data written out as the files
a labelling tool gives (`data/write_folders.py`) and built back, so the result compares with the embedded
detection stage's. `num_classes = 0`: the class count comes from the built dataset (`train.inputs`).

  python -m overfeat_jax.write_folders --out=/tmp/folders
  python -m overfeat_jax.build_dataset --dataset=voc_folder --manual_dir=/tmp/folders/voc --name=embedded_det \
      --classes=/tmp/folders/voc/classes.txt --smaller_side=0 --data_dir=$HOME/tensorflow_datasets
  python -m overfeat_jax.main --config=experiments/configs/own_data.py --workdir=/tmp/own_voc
  # the same pictures through the COCO file:
  python -m overfeat_jax.build_dataset --dataset=coco_json --manual_dir=/tmp/folders/coco --name=embedded_det \
      --smaller_side=0 --data_dir=$HOME/tensorflow_datasets
  python -m overfeat_jax.main --config=experiments/configs/own_data.py:coco --workdir=/tmp/own_coco

Arguments (comma-separated): `coco` reads `coco_json/<name>` instead of `voc_folder/<name>`; `smoke` is the
seconds-long variant (the embedded smoke classifier, then detection, one evaluation scale each, on a dataset
named `embedded_det_smoke`, written with `--train_size=64 --test_size=16`). Your own photos: build them under a name of yours and train the
detection stage alone on them from a trained classifier (the stages of a run share one class list),
e.g. `--config.stages='("detection",)' --config.init.source=/tmp/demo --config.detection.data.name=
voc_folder/my_photos --config.detection.data.eval_split=validation` (hash-split folders have `train` and
`validation`); phone photos are stored with their smaller
side at 256 px by default (`--smaller_side`), so give the detection stage matching sizes
(`--config.detection.box.eval_size=256 --config.detection.scale_jitter=(256,384)`). To start from a trained
classifier instead of training one here, see docs/own_data.md, "Starting from trained weights".
"""

import ml_collections

from overfeat_jax.config_files import load_sibling

FORMATS = {'voc': 'voc_folder', 'coco': 'coco_json'}


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  parts = [p for p in arg.split(',') if p]
  unknown = set(parts) - {'smoke', *FORMATS}
  if unknown or ('voc' in parts and 'coco' in parts):
    raise ValueError(f'unknown config argument {arg!r}; use a comma-separated subset of smoke and voc | coco')
  smoke = 'smoke' in parts
  c = load_sibling('embedded', __file__).get_config('smoke' if smoke else '')
  c.num_classes = 0  # from the built dataset (the embedded classifier's 10 classes, in classes.txt order)
  builder = FORMATS['coco' if 'coco' in parts else 'voc']
  name = 'embedded_det_smoke' if smoke else 'embedded_det'
  # Own data takes no builder options (those are the embedded views' sizes); the folder's splits are train
  # and test (ImageSets/Main, instances_<split>.json).
  c.detection.data = ml_collections.ConfigDict({'name': f'{builder}/{name}', 'options': {},
                                                'train_split': 'train', 'eval_split': 'test'})
  if smoke:  # the CLI test's run: classifier -> detection, one evaluation scale each (fewest compilations)
    c.stages = ('classification', 'detection')
    c.eval.scales, c.eval.flips = (72,), False
    c.detection.box.eval_scales = (128,)
  return c
