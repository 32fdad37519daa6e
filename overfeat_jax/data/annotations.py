"""Readers for ILSVRC annotation files, and the repair of their boxes into the project's box convention.

Why: every ImageNet box source (VOC-style XML, the Kaggle `LOC_*_solution.csv`, the devkit's `meta.mat` and
validation ground truth) must end up in ONE convention (docs/CONVENTIONS.md: continuous pixels,
`x1 = xmin - 1, x2 = xmax`) and ONE label order (sorted WNIDs), with every repair counted. The release's
outputs are in devkit ILSVRC2012_ID order, so the permutation between the two orders lives here too.

Box repair rules, in this order (each counted by `to_boxes`' returned reasons):
  1. unknown synset (not in the class list): the box is dropped (`box_unknown_synset_dropped`).
  2. zero width or height in the devkit's inclusive pixels (xmax = xmin - 1): dropped (`box_empty_dropped`);
     inverted (xmax < xmin - 1, a negative extent): the two values are swapped (`box_inverted_swapped`); the
     annotator's extent is still the best information we have.
  3. the XML's `<size>` is missing or 0: the image's size is used (`size_missing_used_image`).
  4. the XML's `<size>` disagrees with the image: the image is trusted and boxes are rescaled per axis by
     image/annotated size (`size_mismatch_rescaled`): the file's size field describes the picture that was
     annotated, which is the same picture at another resolution.
  5. outside the image: clipped to [0, W] x [0, H] (`box_clipped`).
  6. zero area after clipping: dropped (`box_empty_dropped`).
"""

import csv
import dataclasses
import io
import os
import re
import xml.etree.ElementTree as ET
from typing import Iterable, Mapping, Sequence, Union

import numpy as np
import scipy.io

from overfeat_jax.errors import InputError
from overfeat_jax.metrics import boxes as box_lib

TextSource = Union[str, os.PathLike, bytes]
_WNID = re.compile(r'^n\d{8}$')
NUM_CLS_LOC_CLASSES = 1000


@dataclasses.dataclass(frozen=True)
class RawObject:
  """One box as the file states it: 1-based inclusive pixel coordinates (ILSVRC XML / CSV)."""
  wnid: str
  xmin: float
  ymin: float
  xmax: float
  ymax: float
  # VOC `<difficult>1` or COCO `iscrowd`: stored apart (`ignore_boxes`), kept out of training and of evaluation.
  ignore: bool = False


@dataclasses.dataclass(frozen=True)
class RawAnnotation:
  """One image's annotation as the file states it; width/height None when the file has no usable size."""
  filename: str | None
  width: int | None
  height: int | None
  objects: tuple[RawObject, ...]
  # Objects left out for a missing, non-numeric or non-finite coordinate (VOC XML; counted by the own-data
  # builders as `box_malformed_dropped`).
  malformed: int = 0


@dataclasses.dataclass(frozen=True)
class DevkitSynset:
  """One entry of the ILSVRC2012 devkit's `meta.mat` `synsets` struct."""
  ilsvrc2012_id: int
  wnid: str
  words: str
  num_children: int


def _read_bytes(source: TextSource) -> bytes:
  if isinstance(source, (bytes, bytearray)):
    return bytes(source)
  with open(os.fspath(source), 'rb') as f:
    return f.read()


def _number(node: ET.Element | None, tag: str) -> float | None:
  text = node.findtext(tag) if node is not None else None
  if text is None or not text.strip():
    return None
  try:
    value = float(text.strip())
  except ValueError:
    return None
  return value if np.isfinite(value) else None  # 'nan', 'inf', '1e400': no coordinate


def parse_voc_xml(source: TextSource, *, name: str = '<xml>') -> RawAnnotation:
  """Parses one PASCAL-VOC-style ILSVRC XML file (path or bytes).

  Objects whose coordinates are missing, not numbers or not finite are left out here (they carry no box) and
  counted in `malformed`. Raises `InputError` when the file is not XML or its root is not `<annotation>`.
  """
  try:
    root = ET.fromstring(_read_bytes(source))
  except ET.ParseError as e:
    raise InputError(f'annotation {name} is not valid XML ({e})') from None
  if root.tag != 'annotation':
    raise InputError(f'annotation {name} has root <{root.tag}>, expected <annotation>')
  size = root.find('size')
  width, height = _number(size, 'width'), _number(size, 'height')
  objects, malformed = [], 0
  for obj in root.iter('object'):
    box = obj.find('bndbox')
    coords = [_number(box, t) for t in ('xmin', 'ymin', 'xmax', 'ymax')]
    wnid = (obj.findtext('name') or '').strip()
    if any(c is None for c in coords):
      malformed += 1
      continue
    objects.append(RawObject(wnid, *coords, ignore=(obj.findtext('difficult') or '').strip() in ('1', 'true')))
  return RawAnnotation(
      filename=(root.findtext('filename') or '').strip() or None,
      width=int(width) if width else None,
      height=int(height) if height else None,
      objects=tuple(objects), malformed=malformed)


def parse_prediction_string(text: str) -> tuple[RawObject, ...]:
  """Parses the Kaggle CSV's `"nXXXX xmin ymin xmax ymax nXXXX ..."` (same 1-based values as the XML)."""
  tokens = text.split()
  if len(tokens) % 5:
    raise InputError(f'prediction string has {len(tokens)} fields, not a multiple of 5: {text[:60]!r}')
  try:
    return tuple(RawObject(tokens[i], *(float(t) for t in tokens[i + 1:i + 5]))
                 for i in range(0, len(tokens), 5))
  except ValueError:
    raise InputError(f'prediction string has a non-numeric coordinate: {text[:60]!r}') from None


def read_solution_csv(source: TextSource) -> dict[str, tuple[RawObject, ...]]:
  """Reads `LOC_{train,val}_solution.csv` (`ImageId,PredictionString`) into {image_id: objects}."""
  reader = csv.reader(io.StringIO(_read_bytes(source).decode('utf-8')))
  header = next(reader, None)
  if header is None or [h.strip() for h in header[:2]] != ['ImageId', 'PredictionString']:
    raise InputError(f'{source!s:.80} does not start with the header "ImageId,PredictionString"')
  out = {}
  for row in reader:
    if row:
      out[row[0].strip()] = parse_prediction_string(row[1] if len(row) > 1 else '')
  return out


def read_synset_mapping(source: TextSource) -> list[tuple[str, str]]:
  """Reads `LOC_synset_mapping.txt` (`nXXXXXXXX words, more words` per line) into [(wnid, words)]."""
  out = []
  for i, line in enumerate(_read_bytes(source).decode('utf-8').splitlines()):
    if not line.strip():
      continue
    wnid, _, words = line.strip().partition(' ')
    if not _WNID.match(wnid):
      raise InputError(f'synset mapping line {i + 1} does not start with a WordNet ID: {line[:60]!r}')
    out.append((wnid, words.strip()))
  return out


def _field(entry, name: str):
  value = entry[name]
  while isinstance(value, np.ndarray):  # loadmat nests scalars and strings in 1x1 / 1-element arrays
    value = value.item() if value.size == 1 else value.tolist()
  return value


def read_devkit_meta(source: TextSource) -> list[DevkitSynset]:
  """Reads the devkit's `data/meta.mat` (MATLAB struct array `synsets`) with scipy.io.loadmat."""
  try:
    mat = scipy.io.loadmat(io.BytesIO(_read_bytes(source)), squeeze_me=True, struct_as_record=True)
  except (ValueError, TypeError, OSError, NotImplementedError, IndexError, EOFError) as e:
    raise InputError(f'devkit meta.mat could not be read ({e})') from None
  if 'synsets' not in mat:
    raise InputError('devkit meta.mat has no "synsets" struct')
  synsets = np.atleast_1d(mat['synsets'])
  try:
    return [DevkitSynset(int(_field(s, 'ILSVRC2012_ID')), str(_field(s, 'WNID')), str(_field(s, 'words')),
                         int(_field(s, 'num_children'))) for s in synsets]
  except (ValueError, KeyError, IndexError) as e:
    raise InputError(f'devkit meta.mat synsets lack ILSVRC2012_ID/WNID/words/num_children ({e})') from None


def devkit_classes(synsets: Iterable[DevkitSynset], limit: int = NUM_CLS_LOC_CLASSES) -> list[DevkitSynset]:
  """The classification classes: the leaves (num_children == 0), in ILSVRC2012_ID order, at most `limit`."""
  leaves = sorted((s for s in synsets if s.num_children == 0), key=lambda s: s.ilsvrc2012_id)
  return leaves[:limit]


def read_val_ground_truth(source: TextSource) -> list[int]:
  """Reads `ILSVRC2012_validation_ground_truth.txt`: one 1-based devkit ID per line, in val-file order."""
  try:
    return [int(line) for line in _read_bytes(source).decode('utf-8').split()]
  except ValueError:
    raise InputError('validation ground truth holds a line that is not an integer devkit ID') from None


def devkit_to_sorted(devkit_wnids: Sequence[str], sorted_wnids: Sequence[str]) -> np.ndarray:
  """Permutation p with p[devkit_id - 1] = sorted-WNID label: maps release outputs into our label order.

  `devkit_wnids[i]` is the WNID of ILSVRC2012_ID i + 1 (e.g. from `devkit_classes`). So, for release scores
  `s_dev` [..., 1000], `s_sorted[..., p] = s_dev`; equivalently
  `s_sorted = s_dev[..., sorted_to_devkit(...)]`.
  """
  index = {w: i for i, w in enumerate(sorted_wnids)}
  missing = [w for w in devkit_wnids if w not in index]
  if missing:
    raise InputError(f'{len(missing)} devkit classes are not in the sorted class list, e.g. {missing[0]}')
  return np.asarray([index[w] for w in devkit_wnids], dtype=np.int64)


def sorted_to_devkit(devkit_wnids: Sequence[str], sorted_wnids: Sequence[str]) -> np.ndarray:
  """Inverse permutation q with q[sorted_label] = devkit_id - 1 (both index spaces of the same size)."""
  p = devkit_to_sorted(devkit_wnids, sorted_wnids)
  if len(p) != len(sorted_wnids):
    raise InputError(f'{len(p)} devkit classes vs {len(sorted_wnids)} sorted classes: no bijection')
  q = np.empty_like(p)
  q[p] = np.arange(len(p))
  return q


def to_boxes(ann: RawAnnotation, image_size: tuple[int, int], class_index: Mapping[str, int]
             ) -> tuple[np.ndarray, np.ndarray, list[str]]:
  """Converts and repairs one image's boxes (module docstring rules).

  Args:
    ann: the parsed annotation.
    image_size: (width, height) of the decoded image the boxes belong to (before any resize).
    class_index: WNID -> label.

  Returns:
    boxes float32 [N, 4] (x1, y1, x2, y2) in the project convention, labels int64 [N], and one repair reason
    per repair done (for the build report).
  """
  width, height = image_size
  reasons = []
  ann_w, ann_h = ann.width, ann.height
  if not ann_w or not ann_h:
    reasons.append('size_missing_used_image')
    ann_w, ann_h = width, height
  elif (ann_w, ann_h) != (width, height):
    reasons.append('size_mismatch_rescaled')
  sx, sy = width / ann_w, height / ann_h
  boxes, labels = [], []
  for obj in ann.objects:
    if obj.wnid not in class_index:
      reasons.append('box_unknown_synset_dropped')
      continue
    if obj.xmax == obj.xmin - 1 or obj.ymax == obj.ymin - 1:  # inclusive pixels: an empty extent, not inverted
      reasons.append('box_empty_dropped')
      continue
    xmin, xmax = sorted((obj.xmin, obj.xmax))
    ymin, ymax = sorted((obj.ymin, obj.ymax))
    if (xmin, ymin) != (obj.xmin, obj.ymin):
      reasons.append('box_inverted_swapped')
    raw = box_lib.from_devkit([xmin, ymin, xmax, ymax])[0] * [sx, sy, sx, sy]
    box = np.clip(raw, 0.0, [width, height, width, height])
    if not np.array_equal(box, raw):
      reasons.append('box_clipped')
    if box[2] <= box[0] or box[3] <= box[1]:
      reasons.append('box_empty_dropped')
      continue
    boxes.append(box)
    labels.append(class_index[obj.wnid])
  return (np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64), reasons)
