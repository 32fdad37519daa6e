r"""Builds one of the project's tfds datasets from local files (no network); its build report as text lines.

The library half of the command `python -m overfeat_jax.build_dataset` (`overfeat_jax/build_dataset.py`):

  build(dataset, data_dir, manual_dir, config, name=, smaller_side=, classes=) -> the prepared tfds builder
  summary(dataset_dir) -> the build report's lines (kept, skipped and repaired records per split)

Why not `tfds build`: it would need the dataset module path and tries the network (GCS); this pins
`file_format=array_record` (readable without TensorFlow), checks the paths first (`InputError`: one line, exit
status 2 at the command line) and reports what was skipped or repaired.
"""

import importlib
import os
import re
import shutil
from typing import Callable

import tensorflow_datasets as tfds

from overfeat_jax import errors
from overfeat_jax.data import report as report_lib
from overfeat_jax.errors import InputError


def _lazy(module: str, name: str) -> Callable[[], type]:
  """A loader of the builder class `name` of `overfeat_jax.data.<module>`: imported only when that dataset is
  built (the ImageNet builders pull in scipy and the devkit readers)."""
  return lambda: getattr(importlib.import_module(f'overfeat_jax.data.{module}'), name)


# name -> (builder class loader, needs manual_dir, default config)
DATASETS: dict[str, tuple[Callable[[], type], bool, str | None]] = {
    'ilsvrc2012_cls_loc': (_lazy('imagenet_cls_loc', 'Ilsvrc2012ClsLoc'), True, 'resized256'),
    'ilsvrc2014_det': (_lazy('imagenet_det', 'Ilsvrc2014Det'), True, 'resized256'),
    'embedded': (_lazy('embedded', 'Embedded'), False, None),
    'voc_folder': (_lazy('voc_folder', 'VocFolder'), True, None),
    'coco_json': (_lazy('coco_json', 'CocoJson'), True, None),
    'image_folder': (_lazy('image_folder', 'ImageFolder'), True, None),
}
# The own-data builders (docs/own_data.md): configured by --name, --smaller_side and --classes, not --config.
OWN_DATA = ('voc_folder', 'coco_json', 'image_folder')

def _check_manual_dir(manual_dir: str | None) -> str:
  if not manual_dir:
    raise InputError('--manual_dir is required for this dataset')
  if not os.path.isdir(manual_dir):
    raise InputError(f'--manual_dir {manual_dir} is not a directory')
  if not os.listdir(manual_dir):
    raise InputError(f'--manual_dir {manual_dir} is empty')
  return os.path.abspath(manual_dir)


def own_data_name(manual_dir: str) -> str:
  """A dataset name from a folder's name: lower case, runs of other characters as `_`."""
  name = re.sub(r'[^a-z0-9]+', '_', os.path.basename(os.path.abspath(manual_dir)).lower()).strip('_')
  return name if name[:1].isalpha() else f'data_{name}'


def build(dataset: str, data_dir: str, manual_dir: str | None = None, config: str | None = None, *,
          name: str | None = None, smaller_side: int = 256, classes: str | None = None, rebuild: bool = False
          ) -> tfds.core.DatasetBuilder:
  """Builds (or finds already built) `dataset` in `data_dir` and returns the prepared builder.

  `name`, `smaller_side` (0: original size) and `classes` configure the own-data builders (OWN_DATA), whose
  records go to `data_dir/<dataset>/<name>/`; the other datasets take `config`.

  An own-data dataset already built from its folder as it is now, with the same options, is reused; built
  from another folder, from this one before files were added, removed or changed, or with another
  `smaller_side` or class list (`folders.build_inputs`), it is an InputError. `rebuild` builds it anew in any
  case, keeping the old records until the new ones are complete.
  """
  if dataset not in DATASETS:
    raise InputError(f'unknown dataset {dataset!r}; choose one of {", ".join(DATASETS)}')
  loader, needs_manual, default_config = DATASETS[dataset]
  cls = loader()
  config = config or default_config
  if dataset in OWN_DATA:
    from overfeat_jax.data import folders  # pylint: disable=g-import-not-at-top
    if config is not None:
      raise InputError(f'{dataset} takes --name, --smaller_side and --classes, not --config')
    config = folders.make_config(name or own_data_name(_check_manual_dir(manual_dir)), smaller_side, classes)
  names = [c.name for c in cls.BUILDER_CONFIGS]
  if isinstance(config, str) and config not in names:
    raise InputError(f'--config {config!r} is not a config of {dataset}; choose one of {", ".join(names)}')
  download_config = tfds.download.DownloadConfig(
      manual_dir=_check_manual_dir(manual_dir) if needs_manual else None, try_download_gcs=False)
  make = lambda: cls(config=config, data_dir=data_dir, file_format='array_record')
  version_dir = os.fspath(make().data_dir)
  replaced = _recover_replaced(version_dir)
  builder = make()  # made after the recovery: a builder reads its records' info when it is made
  if dataset in OWN_DATA and builder.is_prepared():
    if not rebuild:
      _check_same_inputs(version_dir, manual_dir, builder.builder_config)  # then tfds reuses it
    else:
      os.rename(version_dir, replaced)  # kept until the new build is complete
      builder = make()
  made = [d for d in _build_dirs(data_dir, version_dir) if not os.path.exists(d)]
  os.makedirs(data_dir, exist_ok=True)
  try:
    builder.download_and_prepare(download_config=download_config)
  except BaseException:
    for d in made:  # a failed build leaves no empty folder behind (tfds removes its own incomplete one)
      try:
        os.rmdir(d)
      except OSError:  # not empty (something else was written there) or not made
        pass
    _recover_replaced(version_dir)
    raise
  if os.path.isdir(replaced):
    shutil.rmtree(replaced)
  return builder


def _recover_replaced(version_dir: str) -> str:
  """The name a rebuild moves the old records to; puts them back if the new build is not there (a rebuild
  that failed or was killed), drops them if it is (killed after completing)."""
  replaced = version_dir + '.replaced'
  if os.path.isdir(replaced):
    if os.path.isdir(version_dir):
      shutil.rmtree(replaced)
    else:
      os.rename(replaced, version_dir)
  return replaced


def _check_same_inputs(version_dir: str, manual_dir: str, config: tfds.core.BuilderConfig) -> None:
  """InputError naming the first difference if the own-data dataset built in `version_dir` was made from
  other inputs than `manual_dir` and `config` would give now (none known: built before they were kept)."""
  from overfeat_jax.data import folders  # pylint: disable=g-import-not-at-top
  built, now = folders.built_inputs(version_dir), folders.build_inputs(manual_dir, config)
  if built is None or built == now:
    return
  if built['root'] != now['root']:
    why = f'was built from {built["root"]}, not {now["root"]}'
  elif built['smaller_side'] != now['smaller_side']:
    why = f'was built with --smaller_side={built["smaller_side"]}, not {now["smaller_side"]}'
  elif built['classes'] != now['classes']:
    why = f'was built with the class list {built["classes"]}, not {now["classes"]}'
  else:
    why = (f'was built from {now["root"]} when it held {built["files"]} files; it holds {now["files"]} now'
           + ('' if built['files'] != now['files'] else ', some of them changed'))
  raise InputError(f'{version_dir} {why}: run again with --rebuild to replace it, or choose another --name')


def _build_dirs(data_dir: str, version_dir: str) -> list[str]:
  """The folders a build may create, deepest first: the version folder and its parents up to `data_dir`,
  and tfds' `downloads/extracted`."""
  dirs, d = [], os.path.abspath(version_dir)
  while d.startswith(os.path.abspath(data_dir) + os.sep):
    dirs.append(d)
    d = os.path.dirname(d)
  downloads = os.path.join(os.path.abspath(data_dir), 'downloads')
  return dirs + [os.path.join(downloads, 'extracted'), downloads, os.path.abspath(data_dir)]


def summary(dataset_dir: str) -> list[str]:
  """Human-readable lines of a dataset's build report (or a note that it has none)."""
  try:
    rep = report_lib.read_report(dataset_dir)
  except FileNotFoundError:
    return [f'{dataset_dir}: no {report_lib.REPORT_FILENAME} (this dataset records no skips or repairs)']
  lines = [f'{rep.get("dataset")}/{rep.get("config")} in {dataset_dir}' +
           (f' (layout: {rep["layout"]})' if rep.get('layout') else '')]
  for split, r in rep['splits'].items():
    lines.append(f'  {split}: kept {r["kept"]}, skipped {r["skipped_total"]}')
    lines += [f'    skipped  {k}: {v}' for k, v in r['skipped'].items()]
    lines += [f'    repaired {k}: {v}' for k, v in r['repaired'].items()]
    lines += [f'    note: {n}' for n in r.get('notes', [])]
  return lines


if __name__ == '__main__':  # the command moved to the package top
  errors.moved_command('overfeat_jax.data.build', 'overfeat_jax.build_dataset')
