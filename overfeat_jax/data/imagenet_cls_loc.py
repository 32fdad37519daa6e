"""tfds builder for ILSVRC2012 CLS-LOC (classification + localization) from files the user already has.

Why a builder of our own (not tfds `imagenet2012`): records follow docs/CONVENTIONS.md (boxes in the project
convention, every box, `image_id`), it reads both layouts users hold (the official archives and the extracted
Kaggle layout, detected automatically), never extracts archives to disk, never needs TensorFlow
(`file_format="array_record"`, images yielded as bytes) and counts every skip and repair in
`build_report.json`.
See docs/data_imagenet.md for the exact files each layout needs.
"""

import dataclasses
import os
import re
import tarfile
from typing import Any, Iterator

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from overfeat_jax.data import annotations
from overfeat_jax.data import images
from overfeat_jax.data import local_builder
from overfeat_jax.data import report as report_lib
from overfeat_jax.errors import InputError

# Smaller images hold no recognisable object and would be upscaled > 30x: skipped (too_small).
MIN_IMAGE_SIDE = 8
_LABELS_FILE = 'datasets/imagenet2012/labels.txt'  # tfds' list of the 1000 CLS-LOC WNIDs, sorted.
_VAL_NUMBER = re.compile(r'ILSVRC2012_val_(\d{8})')

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Put ONE of these layouts in `manual_dir` (nothing is downloaded):
  official archives: ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar, ILSVRC2012_devkit_t12.tar.gz
    (needed for validation labels), and optionally ILSVRC2012_bbox_train_v2.tar.gz and
    ILSVRC2012_bbox_val_v3.tgz;
  extracted (Kaggle) layout: ILSVRC/Data/CLS-LOC/{train/nXXXXXXXX/,val/},
    ILSVRC/Annotations/CLS-LOC/{train,val}/, LOC_synset_mapping.txt, LOC_val_solution.csv (validation
    labels), optionally LOC_train_solution.csv.
"""


@dataclasses.dataclass(eq=False)
class ImageNetConfig(tfds.core.BuilderConfig):
  """`smaller_side`: resize at build time so the smaller side is this (None: keep the original bytes)."""
  smaller_side: int | None = None


BUILDER_CONFIGS = [
    ImageNetConfig(name='resized256', smaller_side=256,
                   description="Smaller side resized to 256 (the paper's training size), boxes scaled."),
    ImageNetConfig(name='original', smaller_side=None,
                   description='Original resolution; valid RGB JPEG bytes stored unchanged.'),
]


def sorted_wnids() -> list[str]:
  """The 1000 CLS-LOC WordNet IDs in sorted order: the project's (and tfds') label order."""
  return tfds.core.tfds_path(_LABELS_FILE).read_text().split()


def record_features(with_label: bool, label_names: list[str] | None = None,
                    with_ignored: bool = False) -> tfds.features.FeaturesDict:
  """The record layout of docs/CONVENTIONS.md (JPEG-encoded image; `label` only for classification data;
  `ignore_boxes`/`ignore_labels` for own data with VOC difficult or COCO crowd objects)."""
  spec = {
      'image': tfds.features.Image(shape=(None, None, 3), encoding_format='jpeg'),
      'image_id': tfds.features.Text(),
      'boxes': tfds.features.Tensor(shape=(None, 4), dtype=np.float32),
      'box_labels': tfds.features.Tensor(shape=(None,), dtype=np.int64),
  }
  if with_ignored:
    spec['ignore_boxes'] = tfds.features.Tensor(shape=(None, 4), dtype=np.float32)
    spec['ignore_labels'] = tfds.features.Tensor(shape=(None,), dtype=np.int64)
  if with_label:
    spec['label'] = tfds.features.ClassLabel(names=label_names)
  return tfds.features.FeaturesDict(spec)


def labelled_turned(decoded: images.Decoded, annotation: Any) -> bool:
  """Whether `annotation` (a RawAnnotation with a size) describes `decoded` turned by its EXIF orientation: the
  orientation is 5-8 (a quarter turn, possibly mirrored) and the annotated (width, height) is the stored
  (height, width) of a non-square image. Orientations 2-4 (mirror, half turn) keep the size, so the annotation
  cannot tell which frame it was drawn on: the stored pixels are kept (as for ILSVRC)."""
  if not isinstance(annotation, annotations.RawAnnotation) or decoded.orientation not in (5, 6, 7, 8):
    return False
  width, height = decoded.size
  return width != height and (annotation.width, annotation.height) == (height, width)


def make_example(image_id: str, source: images.Source, name: str, annotation: Any,
                 class_index: dict[str, int], smaller_side: int | None,
                 report: report_lib.BuildReport, with_ignored: bool = False,
                 boxes_expected: bool = True, shrink_only: bool = False,
                 exif_by_size: bool = False) -> dict[str, Any] | None:
  """Decodes, repairs and encodes one image and its boxes; None (counted) when the image is unusable.

  Args:
    annotation: a RawAnnotation, None (no annotation file: kept without boxes, counted) or an InputError (the
      file was unreadable: counted, kept without boxes).
    with_ignored: also return `ignore_boxes` [K, 4] / `ignore_labels` [K], the objects marked `ignore` (VOC
      difficult, COCO iscrowd: own-data builders), repaired by the same rules; without it they are dropped.
    boxes_expected: False for classification-only data (class folders): no annotation is not a repair.
    shrink_only: resize to `smaller_side` only images larger than it (own data: small photos are kept).
    exif_by_size: own data: when the annotation's size is the stored frame turned a quarter and the EXIF
      orientation is 5-8 (a phone photo labelled as viewers show it), the image is stored turned by its
      orientation and the boxes kept (`labelled_turned`, repair `exif_transposed`). Off for ILSVRC, whose boxes
      refer to the stored pixels.
  """
  try:
    decoded = images.decode(source, name=name, min_size=MIN_IMAGE_SIDE)
    if exif_by_size and labelled_turned(decoded, annotation):
      decoded = images.decode(source, name=name, min_size=MIN_IMAGE_SIDE, exif_transpose=True)
  except images.ImageDecodeError as e:
    report.skip(e.reason, name)
    return None
  for reason in decoded.repairs:
    report.repair(reason, name)
  if isinstance(annotation, InputError):  # counted once, as a skipped annotation; the image is kept
    report.skip('annotation_unreadable', f'{name}: {annotation}')
  elif annotation is None and boxes_expected:
    report.repair('annotation_missing_kept_without_boxes', name)
  groups = {'boxes': (), 'ignore_boxes': ()}
  if isinstance(annotation, annotations.RawAnnotation):
    groups = {'boxes': tuple(o for o in annotation.objects if not o.ignore),
              'ignore_boxes': tuple(o for o in annotation.objects if o.ignore)}
  if shrink_only and smaller_side is not None and min(decoded.size) <= smaller_side:
    smaller_side = None
  stored = images.encode_for_storage(decoded, smaller_side=smaller_side)
  scale = np.array([stored.scale_x, stored.scale_y] * 2, np.float64)
  example = {'image': stored.data, 'image_id': image_id}
  for key, label_key in (('boxes', 'box_labels'), ('ignore_boxes', 'ignore_labels')):
    boxes, labels = np.zeros((0, 4), np.float32), np.zeros((0,), np.int64)
    if isinstance(annotation, annotations.RawAnnotation) and (key == 'boxes' or groups[key]):
      boxes, labels, reasons = annotations.to_boxes(
          dataclasses.replace(annotation, objects=groups[key]), decoded.size, class_index)
      for reason in reasons:  # the size repairs are counted once, with the main boxes
        if key == 'boxes' or not reason.startswith('size_'):
          report.repair(reason, name)
    example[key] = np.clip(boxes * scale, 0.0, [stored.width, stored.height] * 2).astype(np.float32)
    example[label_key] = labels
  if not with_ignored:
    del example['ignore_boxes'], example['ignore_labels']
  report.keep()
  return example


def iter_tar(fileobj_or_path: Any, report: report_lib.BuildReport, name: str) -> Iterator[tuple[str, Any]]:
  """Streams (member name, file object) of a tar (any compression) without extracting; a broken archive is
  counted (`archive_unreadable`) and ends the stream instead of the build."""
  try:
    kwargs = {'name': fileobj_or_path} if isinstance(fileobj_or_path, (str, os.PathLike)) else {
        'fileobj': fileobj_or_path}
    with tarfile.open(mode='r|*', **kwargs) as tar:
      for member in tar:
        if member.isfile():
          yield member.name, tar.extractfile(member)
  except (tarfile.TarError, OSError, EOFError) as e:
    report.skip('archive_unreadable', f'{name}: {e}')


def _stem(path: str) -> str:
  return os.path.splitext(os.path.basename(path))[0]


def _parse_or_error(data: bytes, name: str) -> Any:
  try:
    return annotations.parse_voc_xml(data, name=name)
  except InputError as e:
    return e


class OfficialLayout:
  """The official archives: tar of per-synset tars, val tar, devkit tar.gz and the two bbox archives."""
  name = 'official archives'

  def __init__(self, root: str):
    self.root = root
    self._paths = {k: os.path.join(root, f) for k, f in (
        ('train', 'ILSVRC2012_img_train.tar'), ('validation', 'ILSVRC2012_img_val.tar'),
        ('devkit', 'ILSVRC2012_devkit_t12.tar.gz'), ('bbox_train', 'ILSVRC2012_bbox_train_v2.tar.gz'),
        ('bbox_validation', 'ILSVRC2012_bbox_val_v3.tgz'))}
    self.devkit = self._read_devkit() if os.path.exists(self._paths['devkit']) else None

  @staticmethod
  def detect(root: str) -> bool:
    names = ('ILSVRC2012_img_train.tar', 'ILSVRC2012_img_val.tar')
    return any(os.path.exists(os.path.join(root, f)) for f in names)

  def splits(self) -> list[str]:
    out = [s for s in ('train', 'validation') if os.path.exists(self._paths[s])]
    if 'validation' in out and self.devkit is None:
      raise InputError(f'{self._paths["devkit"]} is needed for the validation labels but does not exist')
    return out

  def _read_devkit(self) -> tuple[list[annotations.DevkitSynset], list[int]]:
    meta, truth = None, None
    scratch = report_lib.BuildReport('devkit')
    for member, f in iter_tar(self._paths['devkit'], scratch, 'devkit'):
      if member.endswith('data/meta.mat'):
        meta = annotations.read_devkit_meta(f.read())
      elif member.endswith('data/ILSVRC2012_validation_ground_truth.txt'):
        truth = annotations.read_val_ground_truth(f.read())
    if meta is None or truth is None or scratch.skipped:
      raise InputError(f'{self._paths["devkit"]} lacks data/meta.mat or '
                       'data/ILSVRC2012_validation_ground_truth.txt')
    return annotations.devkit_classes(meta), truth

  def devkit_wnids(self) -> list[str] | None:
    return [s.wnid for s in self.devkit[0]] if self.devkit else None

  def class_words(self) -> dict[str, str]:
    return {s.wnid: s.words for s in self.devkit[0]} if self.devkit else {}

  def annotations(self, split: str, report: report_lib.BuildReport) -> dict[str, Any]:
    """{image stem: RawAnnotation | InputError} of the split's bbox archive (empty, noted, when absent)."""
    path = self._paths[f'bbox_{split}']
    if not os.path.exists(path):
      report.note(f'{path} is absent: every {split} image is kept without boxes')
      return {}
    return {_stem(m): _parse_or_error(f.read(), m)
            for m, f in iter_tar(path, report, path) if m.endswith('.xml')}

  def images(self, split: str, report: report_lib.BuildReport
             ) -> Iterator[tuple[str, str, bytes, str | None]]:
    """Yields (image_id, name, bytes, wnid) streaming the image archives."""
    if split == 'train':
      for inner_name, inner in iter_tar(self._paths['train'], report, self._paths['train']):
        wnid = _stem(inner_name)
        for member, f in iter_tar(inner, report, inner_name):
          yield _stem(member), f'{inner_name}:{member}', f.read(), wnid
      return
    dev_wnids = self.devkit_wnids()
    truth = self.devkit[1]
    for member, f in iter_tar(self._paths['validation'], report, self._paths['validation']):
      match = _VAL_NUMBER.search(member)
      number = int(match.group(1)) if match else 0
      dev_id = truth[number - 1] if 0 < number <= len(truth) else 0
      wnid = dev_wnids[dev_id - 1] if 0 < dev_id <= len(dev_wnids) else None
      yield _stem(member), member, f.read(), wnid


class ExtractedLayout:
  """The extracted (Kaggle) layout: ILSVRC/Data/CLS-LOC, ILSVRC/Annotations/CLS-LOC and the LOC_* files."""
  name = 'extracted (Kaggle) layout'

  def __init__(self, root: str):
    self.root = root
    self._data = os.path.join(root, 'ILSVRC', 'Data', 'CLS-LOC')
    self._ann = os.path.join(root, 'ILSVRC', 'Annotations', 'CLS-LOC')
    self._csv = {s: os.path.join(root, f'LOC_{f}_solution.csv') for s, f in (('train', 'train'),
                                                                             ('validation', 'val'))}
    mapping = os.path.join(root, 'LOC_synset_mapping.txt')
    self._words = dict(annotations.read_synset_mapping(mapping)) if os.path.exists(mapping) else {}
    self._solutions: dict[str, dict] = {}

  @staticmethod
  def detect(root: str) -> bool:
    return os.path.isdir(os.path.join(root, 'ILSVRC', 'Data', 'CLS-LOC'))

  def splits(self) -> list[str]:
    pairs = (('train', 'train'), ('validation', 'val'))
    return [s for s, d in pairs if os.path.isdir(os.path.join(self._data, d))]

  def devkit_wnids(self) -> None:
    return None

  def class_words(self) -> dict[str, str]:
    return self._words

  def _solution(self, split: str) -> dict:
    if split not in self._solutions:
      path = self._csv[split]
      self._solutions[split] = annotations.read_solution_csv(path) if os.path.exists(path) else {}
    return self._solutions[split]

  def annotation(self, split: str, image_id: str, wnid: str | None) -> Any:
    """RawAnnotation from the XML (preferred: it has the size), else from the CSV, else None."""
    sub = wnid if split == 'train' and wnid else ''
    path = os.path.join(self._ann, 'train' if split == 'train' else 'val', sub, image_id + '.xml')
    if os.path.exists(path):
      with open(path, 'rb') as f:
        return _parse_or_error(f.read(), path)
    objects = self._solution(split).get(image_id)
    return annotations.RawAnnotation(None, None, None, objects) if objects else None

  def images(self, split: str, report: report_lib.BuildReport) -> Iterator[tuple[str, str, str, str | None]]:
    """Yields (image_id, name, path, wnid) in sorted order."""
    if split == 'train':
      top = os.path.join(self._data, 'train')
      for wnid in sorted(os.listdir(top)):
        folder = os.path.join(top, wnid)
        for fname in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
          yield _stem(fname), os.path.join(folder, fname), os.path.join(folder, fname), wnid
      return
    top = os.path.join(self._data, 'val')
    for fname in sorted(os.listdir(top)):
      image_id = _stem(fname)
      wnid = self._val_wnid(image_id)
      yield image_id, os.path.join(top, fname), os.path.join(top, fname), wnid

  def _val_wnid(self, image_id: str) -> str | None:
    objects = self._solution('validation').get(image_id)
    if not objects:
      ann = self.annotation('validation', image_id, None)
      objects = ann.objects if isinstance(ann, annotations.RawAnnotation) else ()
    return objects[0].wnid if objects else None


def detect_layout(root: str) -> Any:
  """Returns the layout reader for `root` (official archives win when both are present)."""
  if not os.path.isdir(root):
    raise InputError(f'manual_dir {root} is not a directory')
  for layout in (OfficialLayout, ExtractedLayout):
    if layout.detect(root):
      return layout(root)
  raise InputError(f'{root} holds neither ILSVRC2012_img_{{train,val}}.tar nor ILSVRC/Data/CLS-LOC')


class Ilsvrc2012ClsLoc(local_builder.LocalBuilder):
  """ILSVRC2012 CLS-LOC: image, image_id, label (1000 sorted WNIDs), every box and its label."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release: both layouts, project box convention, build report.'}
  BUILDER_CONFIGS = BUILDER_CONFIGS
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=record_features(with_label=True, label_names=sorted_wnids()),
        supervised_keys=('image', 'label'),
        metadata=tfds.core.MetadataDict(),
        homepage='https://image-net.org/challenges/LSVRC/2012/')

  def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
    layout = detect_layout(os.fspath(dl_manager.manual_dir))
    logging.info('ilsvrc2012_cls_loc: detected the %s in %s', layout.name, layout.root)
    splits = layout.splits()
    if not splits:
      raise InputError(f'{layout.root} ({layout.name}) holds neither a train nor a validation split')
    wnids = sorted_wnids()
    words = layout.class_words()
    unknown = sorted(set(words) - set(wnids))
    if unknown:
      raise InputError(f'the class list in {layout.root} names {len(unknown)} WNIDs that are not ILSVRC2012 '
                       f'CLS-LOC classes, e.g. {unknown[0]}')
    self.info.metadata.update({'layout': layout.name, 'class_words': words,
                               'devkit_order_wnids': layout.devkit_wnids()})
    self._reports = {s: report_lib.BuildReport(s) for s in splits}
    return {s: self._generate(layout, s, {w: i for i, w in enumerate(wnids)}) for s in splits}

  def _generate(self, layout: Any, split: str, class_index: dict[str, int]) -> Iterator[tuple[str, dict]]:
    report = self._reports[split]
    report.note(f'layout: {layout.name}')
    boxes = layout.annotations(split, report) if isinstance(layout, OfficialLayout) else None
    for image_id, name, source, wnid in layout.images(split, report):
      if wnid not in class_index:
        report.skip('label_unknown' if wnid else 'label_missing', name)
        continue
      ann = boxes.get(image_id) if boxes is not None else layout.annotation(split, image_id, wnid)
      example = make_example(image_id, source, name, ann, class_index, self.builder_config.smaller_side,
                             report)
      if example is not None:
        example['label'] = class_index[wnid]
        yield image_id, example
    report.log()

  def _generate_examples(self, **kwargs: Any) -> Iterator[tuple[str, dict]]:
    raise NotImplementedError('examples come from _generate, one generator per split')

  def _post_download_and_prepare_hook(self) -> None:
    path = report_lib.write_reports(self.data_dir, self._reports, dataset=self.name,
                                    config=self.builder_config.name, layout=self.info.metadata.get('layout'))
    logging.info('build report written to %s', path)
