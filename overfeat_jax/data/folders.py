"""What the own-data builders (`voc_folder`, `coco_json`, `image_folder`) share: config, splits, classes.

Why one home: a user's folder has no fixed name or size, so every own-data builder is configured the same way
(a dataset name of the user's choosing, a stored smaller side, an optional class-list file), assigns images
without a split file to splits by the same file-name hash, and writes the same records (docs/CONVENTIONS.md,
through `imagenet_cls_loc.make_example`: the ImageNet builders' decoding, repairs and build report).

Split by hash (when the data names no splits): `sha1(file stem)`'s first 32 bits / 2**32 < `TRAIN_FRACTION`
(0.8) is `train`, the rest `validation`: deterministic, stable when photos are added (an image never moves),
and independent of the file order on disk.

Records go to `data_dir/<builder>/<name>/<version>`; read them with `pipeline.open_source('<builder>/<name>',
...)` and the class names with `class_names(dataset_dir)`.
"""

import collections
import dataclasses
import hashlib
import json
import os
import re
from typing import Any, Callable, Iterator

from absl import logging
from etils import epath
import tensorflow_datasets as tfds

from overfeat_jax.data import imagenet_cls_loc
from overfeat_jax.data import local_builder
from overfeat_jax.data import report as report_lib
from overfeat_jax.errors import InputError

TRAIN_FRACTION = 0.8
DEFAULT_SMALLER_SIDE = 256  # the paper's training size; phone photos (4032x3024) become 341x256
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.webp', '.tif', '.tiff')
# Split names in file and folder names (ImageSets/Main/val.txt, instances_val2017.json, Roboflow's valid/).
SPLIT_WORDS = {'train': 'train', 'val': 'validation', 'valid': 'validation', 'validation': 'validation',
               'test': 'test'}
UNASSIGNED = 'unassigned'  # the build report's pseudo-split for items no split file lists
_NAME = re.compile(r'^[a-z][a-z0-9_]*$')


@dataclasses.dataclass(eq=False)
class FolderConfig(tfds.core.BuilderConfig):
  """`smaller_side`: at build time, shrink images whose smaller side is larger to this (None: keep every
  size; smaller images are never enlarged); `classes_file`: one class name per line, in label order (None: the
  names found in the annotations, sorted)."""
  smaller_side: int | None = DEFAULT_SMALLER_SIDE
  classes_file: str | None = None


def make_config(name: str, smaller_side: int | None = DEFAULT_SMALLER_SIDE,
                classes_file: str | None = None) -> FolderConfig:
  """The config of one user dataset, stored under `<builder>/<name>`; InputError on a bad name or size."""
  if not _NAME.match(name or ''):
    raise InputError(f'dataset name {name!r} must be lower case letters, digits and _, starting with a '
                     'letter')
  if smaller_side and smaller_side < imagenet_cls_loc.MIN_IMAGE_SIDE:
    raise InputError(f'smaller_side must be at least {imagenet_cls_loc.MIN_IMAGE_SIDE} (or 0: keep the '
                     'size), '
                     f'got {smaller_side}')
  if classes_file is not None and not os.path.isfile(classes_file):
    raise InputError(f'classes file {classes_file} does not exist')
  size = f'smaller side {smaller_side}' if smaller_side else 'original size'
  return FolderConfig(name=name, smaller_side=smaller_side or None,
                      classes_file=os.path.abspath(classes_file) if classes_file else None,
                      description=f'{name}: {size}' + (f', classes: {classes_file}' if classes_file else ''))


def hash_split(key: str) -> str:
  """'train' or 'validation' for an image without a split file, from its stem (module docstring)."""
  stem = os.path.splitext(os.path.basename(key))[0]
  value = int.from_bytes(hashlib.sha1(stem.encode('utf-8')).digest()[:4], 'big') / 2**32
  return 'train' if value < TRAIN_FRACTION else 'validation'


def split_of(name: str) -> str | None:
  """The split a file or folder name states ('instances_val2017' -> validation, 'valid' -> validation)."""
  for token in re.split(r'[^a-z0-9]+', os.path.splitext(os.path.basename(name))[0].lower()):
    word = token.rstrip('0123456789')
    if word in SPLIT_WORDS:
      return SPLIT_WORDS[word]
  return None


def is_image_file(name: str) -> bool:
  return name.lower().endswith(IMAGE_EXTENSIONS)


def read_classes_file(path: str) -> list[str]:
  """Class names, one per line in label order (labelImg's classes.txt); blank lines skipped."""
  with open(path, encoding='utf-8') as f:
    names = [line.strip() for line in f if line.strip()]
  if not names:
    raise InputError(f'classes file {path} lists no class')
  if len(set(names)) != len(names):
    raise InputError(f'classes file {path} lists a class twice')
  return names


def dataset_dir(data_dir: str, name: str) -> str:
  """The versioned directory of the built own-data dataset `name` ('voc_folder/my_photos') in `data_dir`."""
  parent = epath.Path(data_dir) / name
  versions = sorted((p for p in parent.iterdir() if re.match(r'^\d+\.\d+\.\d+$', p.name)),
                    key=lambda p: tuple(int(v) for v in p.name.split('.'))) if parent.is_dir() else []
  if not versions:
    raise InputError(f'{name} is not built in {data_dir}: build it first with '
                     'python -m overfeat_jax.build_dataset '
                     '(docs/own_data.md)')
  return os.fspath(versions[-1])


def source_state(root: str) -> dict[str, Any]:
  """What a build read from `root`, to tell later whether the folder changed since: its absolute path, its
  file count and a SHA-256 over every file's relative path and size, and the bytes of the files that are not
  photos (annotations, class lists: small, and an edited coordinate keeps the size) up to 16 MB. Modification
  times are left out, so the same files written again (`write_folders`, a copy) are the same source."""
  root = os.path.abspath(root)
  digest, count = hashlib.sha256(), 0
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames.sort()
    for name in sorted(filenames):
      path = os.path.join(dirpath, name)
      try:
        size = os.path.getsize(path)
      except OSError:  # a broken link or a file removed meanwhile: as absent
        continue
      digest.update(f'{os.path.relpath(path, root)}\0{size}\n'.encode())
      count += 1
      if not name.lower().endswith(IMAGE_EXTENSIONS) and size <= 16 << 20:
        try:
          with open(path, 'rb') as f:
            digest.update(hashlib.sha256(f.read()).digest())
        except OSError:  # unreadable: its name and size count
          pass
  return {'root': root, 'files': count, 'sha256': digest.hexdigest()}


def build_inputs(root: str, config: 'FolderConfig') -> dict[str, Any]:
  """Everything a build of `config` reads: the folder's `source_state` and the options (`--smaller_side`, the
  class list of `--classes`), kept in metadata.json as `source` to tell a later build whether it would make
  the same records."""
  classes = read_classes_file(config.classes_file) if config.classes_file else None
  return {**source_state(root), 'smaller_side': config.smaller_side or 0, 'classes': classes}


def built_inputs(dataset_dir: str | os.PathLike) -> dict[str, Any] | None:
  """`build_inputs` of a built own-data dataset (None: built before they were kept)."""
  path = epath.Path(dataset_dir) / 'metadata.json'
  return json.loads(path.read_text()).get('source') if path.exists() else None


def same_but_case(names: list[str]) -> list[list[str]]:
  """Groups of class names equal but for case and spaces (`Cat`, `cat `): kept apart, noted in the report."""
  groups: dict[str, list[str]] = {}
  for name in names:
    groups.setdefault(' '.join(name.split()).casefold(), []).append(name)
  return [g for g in groups.values() if len(g) > 1]


def class_names(dataset_dir: str | os.PathLike) -> list[str]:
  """The class names (label order) of a built own-data dataset, from its versioned directory."""
  path = epath.Path(dataset_dir) / 'metadata.json'
  if not path.exists():
    raise InputError(f'{dataset_dir} has no metadata.json: not an own-data dataset (voc_folder, coco_json, '
                     'image_folder)')
  return list(json.loads(path.read_text())['class_names'])


@dataclasses.dataclass(frozen=True)
class Item:
  """One image to write: its id (unique in its split), path, annotation (RawAnnotation, None) and class."""
  image_id: str
  path: str
  annotation: Any = None
  label: str | None = None


class Reports:
  """One `BuildReport` per split, created on first use (skips found while scanning count in their split)."""

  def __init__(self):
    self.by_split: dict[str, report_lib.BuildReport] = {}

  def __getitem__(self, split: str) -> report_lib.BuildReport:
    if split not in self.by_split:
      self.by_split[split] = report_lib.BuildReport(split)
    return self.by_split[split]


class FolderBuilder(local_builder.LocalBuilder, skip_registration=True):
  """Base of the own-data builders: subclasses scan `manual_dir` (`_scan`) into items per split, classes."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  WITH_LABEL = False  # classification records (`label`) instead of detection records (boxes, ignore boxes)
  CLASS_SOURCE = 'the annotations (sorted)'  # where `_scan`'s class list comes from, for the report's note
  RECORD = 'image with an annotation'  # what `_scan` makes a record of, for the error when it finds none

  def _info(self) -> tfds.core.DatasetInfo:
    features = imagenet_cls_loc.record_features(with_label=self.WITH_LABEL, with_ignored=not self.WITH_LABEL)
    return self.dataset_info_from_configs(features=features, metadata=tfds.core.MetadataDict(),
                                          description=self.builder_config.description)

  def _scan(self, root: str, reports: Reports) -> tuple[dict[str, list[Item]], list[str], dict[str, Any]]:
    """({split: items}, found class names (sorted), extra metadata); counts what it skips in `reports`."""
    raise NotImplementedError

  def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
    root = os.fspath(dl_manager.manual_dir)
    if not os.path.isdir(root):
      raise InputError(f'--manual_dir {root} is not a directory')
    reports = Reports()
    splits, found, metadata = self._scan(root, reports)
    c = self.builder_config
    classes = read_classes_file(c.classes_file) if c.classes_file else found
    source = c.classes_file or self.CLASS_SOURCE
    if not classes:
      raise InputError(f'{root}: no class found (no annotated object or class folder) and no --classes file')
    # `metadata` may name the classes when the keys are not names (COCO's category ids).
    self.info.metadata.update({'class_names': classes, 'class_source': source, 'root': root,
                               'source': build_inputs(root, c), **metadata})
    if self.WITH_LABEL:
      self.info.features['label'].names = list(self.info.metadata['class_names'])
    splits = {s: items for s, items in splits.items() if items}
    if not splits:
      skipped = collections.Counter()
      for report in reports.by_split.values():
        skipped.update(report.skipped)
      counts = ', '.join(f'{reason} {n}' for reason, n in sorted(skipped.items()))
      raise InputError(f'{root}: no {self.RECORD} was found' + (f' (skipped: {counts})' if counts else ''))
    twins = same_but_case(list(self.info.metadata['class_names']))
    for split in splits:
      reports[split].note(f'classes: {len(classes)} from {source}')
      if twins:  # `Cat` and `cat`: two classes, as written; most likely a typo in the labels
        reports[split].note(f'class names that differ only in case or spaces: {twins}')
    self._reports = reports.by_split
    index = {name: i for i, name in enumerate(classes)}
    return {s: self._generate(items, reports[s], index) for s, items in splits.items()}

  def _generate(self, items: list[Item], report: report_lib.BuildReport, index: dict[str, int]
                ) -> Iterator[tuple[str, dict]]:
    for item in items:
      if self.WITH_LABEL and item.label not in index:
        report.skip('label_unknown', item.path)
        continue
      example = imagenet_cls_loc.make_example(
          item.image_id, item.path, item.path, item.annotation, index, self.builder_config.smaller_side,
          report, with_ignored=not self.WITH_LABEL, boxes_expected=not self.WITH_LABEL, shrink_only=True,
          exif_by_size=True)
      if example is not None:
        if self.WITH_LABEL:
          example['label'] = index[item.label]
        yield item.image_id, example
    report.log()

  def _generate_examples(self, **kwargs: Any) -> Iterator[tuple[str, dict]]:
    raise NotImplementedError('examples come from _generate, one generator per split')

  def _post_download_and_prepare_hook(self) -> None:
    for report in self._reports.values():
      if report.split == UNASSIGNED:
        report.log()
    path = report_lib.write_reports(self.data_dir, self._reports, dataset=self.name,
                                    config=self.builder_config.name)
    logging.info('build report written to %s', path)


def first_dir(root: str, names: tuple[str, ...]) -> str | None:
  """The first of `root/name` that is a directory (names compared case-insensitively)."""
  present = {n.lower(): n for n in os.listdir(root)}
  for name in names:
    found = present.get(name.lower())
    if found and os.path.isdir(os.path.join(root, found)):
      return os.path.join(root, found)
  return None


def images_by_stem(folder: str, reports: Reports, split_for: Callable[[str], str]) -> dict[str, str]:
  """{stem: path} of the image files directly in `folder`; a second file with the same stem (a.jpg, a.png)
  is skipped and counted in the report of `split_for(stem)` (`duplicate_file_name`): its annotation could
  belong to either."""
  out = {}
  for name in sorted(os.listdir(folder)):
    path = os.path.join(folder, name)
    if not is_image_file(name) or not os.path.isfile(path):
      continue
    stem = os.path.splitext(name)[0]
    if stem in out:
      reports[split_for(stem)].skip('duplicate_file_name', path)
      continue
    out[stem] = path
  return out
