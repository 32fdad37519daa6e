"""tfds builder for ILSVRC2014 DET (200 classes) from the extracted ILSVRC layout the user already has.

Why: the paper's detection task (Section 5) trains on every object of an image and on images with no object at
all (negatives), so those images are kept with an empty box array. The records follow docs/CONVENTIONS.md
without `label` (detection has none); `box_labels` index the 200 DET classes in sorted-WNID order, listed in
the dataset's `metadata.json` (`class_wnids`, `class_names`; read them with `det_classes`).

Class list, in order of preference (docs/data_imagenet.md): `map_det.txt` from the DET devkit
(`WNID id name`), or `det_synsets.txt` (`WNID words`), found in `manual_dir` or
`manual_dir/ILSVRC/devkit/data/`; without either, the WNIDs met in the train and val annotations (a
warning, and a note in the build report).

Validation blacklist: when the devkit's `ILSVRC2014_det_validation_blacklist.txt` (or the 2015 one) lies in the
same folders (or in `manual_dir/ILSVRC2014_devkit/data/`, the devkit tarball extracted there), its (image, class) pairs are recorded per validation record in `ignore_classes` (int64 `[K]`,
empty elsewhere): the classes whose ground truth and detections `eval_detection.m` ignores in that image. The
file's lines are `image_index WNID`, `image_index` being the index column of ImageSets/DET/val.txt; lines that
are malformed or name an unknown image or class are skipped and counted in the build report.
"""

import json
import os
import re
from typing import Any, Iterator

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from overfeat_jax.data import annotations
from overfeat_jax.data import imagenet_cls_loc
from overfeat_jax.data import local_builder
from overfeat_jax.data import report as report_lib
from overfeat_jax.errors import InputError

_TRAIN_LIST = re.compile(r'^train(_\d+)?\.txt$')
BLACKLIST_NAMES = ('ILSVRC2014_det_validation_blacklist.txt', 'ILSVRC2015_det_validation_blacklist.txt')
_WNID = re.compile(r'^n\d{8}$')
NUM_DET_CLASSES = 200

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Put the extracted ILSVRC DET data in `manual_dir`: ILSVRC/Data/DET/{train,val}/,
ILSVRC/Annotations/DET/{train,val}/, ILSVRC/ImageSets/DET/{train_*.txt or train.txt, val.txt}, and
preferably the devkit's map_det.txt (or a det_synsets.txt of `WNID words` lines) in manual_dir or
manual_dir/ILSVRC/devkit/data/, and for the official DET-val numbers the devkit's
ILSVRC2014_det_validation_blacklist.txt in the same place.
"""


def read_class_list(path: str) -> list[tuple[str, str]]:
  """Reads `map_det.txt` (`WNID id name`) or `det_synsets.txt` (`WNID words`): [(wnid, name)] by WNID."""
  out = {}
  with open(path) as f:
    for i, line in enumerate(f):
      parts = line.split()
      if not parts:
        continue
      if not _WNID.match(parts[0]):
        raise InputError(f'{path} line {i + 1} does not start with a WordNet ID: {line.strip()[:60]!r}')
      rest = parts[2:] if len(parts) > 2 and parts[1].isdigit() else parts[1:]
      out[parts[0]] = ' '.join(rest)
  return sorted(out.items())


def read_image_set(path: str, report: report_lib.BuildReport) -> list[str]:
  """Reads an ImageSets/DET list: `relative/path 1|-1` (train_N.txt) or `name index` (train.txt, val.txt)."""
  out = []
  with open(path) as f:
    for i, line in enumerate(f):
      parts = line.split()
      if not parts:
        continue
      if len(parts) != 2 or not parts[1].lstrip('-').isdigit():
        report.skip('image_set_line_malformed', f'{path}:{i + 1}')
        continue
      out.append(parts[0])
  return out


def read_blacklist(path: str, val_index: dict[int, str], class_index: dict[str, int],
                   report: report_lib.BuildReport) -> dict[str, list[int]]:
  """Reads the devkit's DET validation blacklist (`image_index WNID` lines) -> {val relpath: [class, ...]}.

  Args:
    val_index: ImageSets/DET/val.txt's index column -> image relpath (`read_val_index`).
    class_index: WNID -> box label.
    report: the validation build report; bad lines are skipped and counted there.
  """
  out: dict[str, list[int]] = {}
  with open(path) as f:
    for i, line in enumerate(f):
      parts = line.split()
      if not parts:
        continue
      if len(parts) != 2 or not parts[0].isdigit():
        report.skip('blacklist_line_malformed', f'{path}:{i + 1}')
      elif int(parts[0]) not in val_index:
        report.skip('blacklist_image_unknown', f'{path}:{i + 1}')
      elif parts[1] not in class_index:
        report.skip('blacklist_class_unknown', f'{path}:{i + 1}')
      else:
        classes = out.setdefault(val_index[int(parts[0])], [])
        if class_index[parts[1]] not in classes:  # a repeated line names the same pair
          classes.append(class_index[parts[1]])
  return out


def read_val_index(path: str) -> dict[int, str]:
  """ImageSets/DET/val.txt (`name index` lines) -> {index: name}; lines without an integer index are left out
  (`read_image_set` counts them)."""
  out = {}
  with open(path) as f:
    for line in f:
      parts = line.split()
      if len(parts) == 2 and parts[1].isdigit():
        out[int(parts[1])] = parts[0]
  return out


def det_classes(dataset_dir: str) -> list[tuple[str, str]]:
  """[(wnid, name)] of a built DET dataset, in box-label order, from its versioned directory."""
  with open(os.path.join(dataset_dir, 'metadata.json')) as f:
    meta = json.load(f)
  return list(zip(meta['class_wnids'], meta['class_names']))


class DetLayout:
  """Paths of the extracted ILSVRC DET layout under `root`."""

  def __init__(self, root: str):
    if not os.path.isdir(os.path.join(root, 'ILSVRC', 'Data', 'DET')):
      raise InputError(f'{root} holds no ILSVRC/Data/DET folder (the extracted ILSVRC DET layout)')
    self.root = root
    self.data = os.path.join(root, 'ILSVRC', 'Data', 'DET')
    self.ann = os.path.join(root, 'ILSVRC', 'Annotations', 'DET')
    self.sets = os.path.join(root, 'ILSVRC', 'ImageSets', 'DET')

  def image_lists(self, split: str) -> list[str]:
    """The ImageSets files of a split (train: train.txt and/or train_N.txt, val: val.txt)."""
    if not os.path.isdir(self.sets):
      return []
    names = sorted(os.listdir(self.sets))
    if split == 'train':
      return [os.path.join(self.sets, n) for n in names if _TRAIN_LIST.match(n)]
    return [os.path.join(self.sets, n) for n in names if n == 'val.txt']

  def class_list_file(self) -> str | None:
    return self._devkit_file(('map_det.txt', 'det_synsets.txt'))

  def blacklist_file(self) -> str | None:
    return self._devkit_file(BLACKLIST_NAMES)

  def _devkit_file(self, names: tuple[str, ...]) -> str | None:
    """The first of `names` in `root`, `root/ILSVRC/devkit/data` or `root/ILSVRC2014_devkit/data` (the devkit
    tarball extracted in place), or None."""
    for folder in (self.root, os.path.join(self.root, 'ILSVRC', 'devkit', 'data'),
                   os.path.join(self.root, 'ILSVRC2014_devkit', 'data')):
      for name in names:
        if os.path.isfile(os.path.join(folder, name)):
          return os.path.join(folder, name)
    return None

  def annotation(self, folder: str, relpath: str) -> Any:
    path = os.path.join(self.ann, folder, relpath + '.xml')
    if not os.path.exists(path):
      return None
    try:
      return annotations.parse_voc_xml(path, name=path)
    except InputError as e:
      return e

  def wnids_in_annotations(self) -> list[tuple[str, str]]:
    found = set()
    for dirpath, _, files in os.walk(self.ann):
      for fname in files:
        if fname.endswith('.xml'):
          ann = self.annotation('', os.path.relpath(os.path.join(dirpath, fname[:-4]), self.ann))
          if isinstance(ann, annotations.RawAnnotation):
            found.update(o.wnid for o in ann.objects if _WNID.match(o.wnid))
    return [(w, w) for w in sorted(found)]


class Ilsvrc2014Det(local_builder.LocalBuilder):
  """ILSVRC2014 DET: image, image_id, every box and its class (200 DET classes, sorted WNIDs); no `label`."""

  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {'1.0.0': 'First release: negatives kept with empty boxes, build report.',
                   '1.1.0': '`ignore_classes` per record: the devkit validation blacklist (module docstring).'}
  BUILDER_CONFIGS = imagenet_cls_loc.BUILDER_CONFIGS
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            **imagenet_cls_loc.record_features(with_label=False),
            'ignore_classes': tfds.features.Tensor(shape=(None,), dtype=np.int64)}),
        metadata=tfds.core.MetadataDict(),
        homepage='https://image-net.org/challenges/LSVRC/2014/')

  def _classes(self, layout: DetLayout) -> tuple[list[tuple[str, str]], str]:
    path = layout.class_list_file()
    if path:
      return read_class_list(path), path
    logging.warning('no map_det.txt or det_synsets.txt in %s: the classes are the WNIDs met in the '
                    'annotations', layout.root)
    return layout.wnids_in_annotations(), 'WNIDs found in the annotations'

  def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
    layout = DetLayout(os.fspath(dl_manager.manual_dir))
    logging.info('ilsvrc2014_det: extracted ILSVRC DET layout in %s', layout.root)
    classes, source = self._classes(layout)
    if not classes:
      raise InputError(f'no DET classes: {layout.root} has no class list file and no annotated object')
    if len(classes) != NUM_DET_CLASSES:
      logging.warning('%d DET classes from %s (ILSVRC DET has %d)', len(classes), source, NUM_DET_CLASSES)
    self.info.metadata.update({'class_wnids': [w for w, _ in classes], 'class_names': [n for _, n in classes],
                               'class_source': source})
    splits = {s: f for s, f in (('train', 'train'), ('validation', 'val')) if layout.image_lists(s)}
    if not splits:
      raise InputError(f'{layout.sets} holds no train*.txt or val.txt image list')
    self._reports = {s: report_lib.BuildReport(s) for s in splits}
    for r in self._reports.values():
      r.note(f'classes: {len(classes)} from {source}')
    index = {w: i for i, (w, _) in enumerate(classes)}
    blacklist = self._blacklist(layout, index) if 'validation' in splits else {}
    self.info.metadata['blacklist_source'] = layout.blacklist_file() if blacklist else None
    return {s: self._generate(layout, s, folder, index, blacklist if s == 'validation' else {})
            for s, folder in splits.items()}

  def _blacklist(self, layout: DetLayout, index: dict[str, int]) -> dict[str, list[int]]:
    """{val relpath: blacklisted classes} from the devkit file, or {} (a note either way)."""
    report, path = self._reports['validation'], layout.blacklist_file()
    if path is None:
      report.note(f'no validation blacklist ({" or ".join(BLACKLIST_NAMES)}): every (image, class) is evaluated')
      return {}
    val_index = {k: v for f in layout.image_lists('validation') for k, v in read_val_index(f).items()}
    blacklist = read_blacklist(path, val_index, index, report)
    report.note(f'validation blacklist: {sum(map(len, blacklist.values()))} (image, class) pairs from {path}')
    return blacklist

  def _generate(self, layout: DetLayout, split: str, folder: str, index: dict[str, int],
                blacklist: dict[str, list[int]]) -> Iterator[tuple[str, dict]]:
    report = self._reports[split]
    relpaths = sorted({p for f in layout.image_lists(split) for p in read_image_set(f, report)})
    for relpath in relpaths:
      path = os.path.join(layout.data, folder, relpath + '.JPEG')
      if not os.path.exists(path):
        report.skip('image_missing', path)
        continue
      ann = layout.annotation(folder, relpath)
      example = imagenet_cls_loc.make_example(os.path.basename(relpath), path, path, ann, index,
                                              self.builder_config.smaller_side, report)
      if example is not None:
        example['ignore_classes'] = np.asarray(blacklist.get(relpath, []), np.int64)
        yield relpath, example
    report.log()

  def _generate_examples(self, **kwargs: Any) -> Iterator[tuple[str, dict]]:
    raise NotImplementedError('examples come from _generate, one generator per split')

  def _post_download_and_prepare_hook(self) -> None:
    path = report_lib.write_reports(self.data_dir, self._reports, dataset=self.name,
                                    config=self.builder_config.name)
    logging.info('build report written to %s', path)
