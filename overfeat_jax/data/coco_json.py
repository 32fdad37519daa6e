"""tfds builder `coco_json`: photos labelled in a COCO instances file (most labelling tools export it).

  python -m overfeat_jax.build_dataset --dataset=coco_json --manual_dir=/data/my_coco --name=my_coco \
      --data_dir=/data/tfds [--smaller_side=256]

Layout: one or more instances files (`*.json` in the folder, in `annotations/`, or in a split folder as
Roboflow writes `train/_annotations.coco.json`). The split comes from the file or folder name (`train`,
`val`/`valid`, `test`, digits allowed: `instances_val2017.json`); a single file without one is split by
file-name hash (`folders.hash_split`: 80 % train, 20 % validation). An image's `file_name` is looked up
next to its instances file, in `images/` there, in the folder, in `images/` of the folder and in the
folder's sub-folders named after the split (`train2017/`).

Boxes: `bbox = [x, y, w, h]` in continuous pixels becomes `(x, y, x + w, y + h)` (docs/CONVENTIONS.md);
`iscrowd: 1` boxes go to `ignore_boxes` (kept out of training, ignored by the detection evaluation).
Classes: the categories some annotation uses, re-indexed densely by increasing id; `metadata.json` holds
`class_names` and `category_ids` (label i is category `category_ids[i]`). Images without annotations are
kept (COCO lists labelled negatives).
Skipped or repaired, and counted in `build_report.json`: a missing image file (`image_missing`), two images
with one `id` (`duplicate_image_id`) or one `file_name` (`duplicate_file_name`), an annotation of an unknown
image (`annotation_unknown_image`), a bbox that is not 4 numbers (`box_malformed_dropped`), an unknown
category (`box_unknown_synset_dropped`), and `annotations.to_boxes`' repairs (outside the image: clipped;
zero area: dropped; `width`/`height` different from the file: rescaled), except a phone photo whose
`width`/`height` is its stored size turned a quarter with EXIF orientation 5-8: stored turned, boxes kept
(`exif_transposed`; `imagenet_cls_loc.labelled_turned`).
"""

import collections
import json
import math
import os
from typing import Any

from etils import epath

from overfeat_jax.data import annotations
from overfeat_jax.data import folders
from overfeat_jax.errors import InputError


def find_instance_files(root: str) -> list[str]:
  """The COCO instances files under `root` (depth <= 2), sorted; files without `images` are left out."""
  found = []
  for dirpath, dirnames, filenames in os.walk(root):
    depth = os.path.relpath(dirpath, root).count(os.sep) + (dirpath != root)
    if depth >= 2:
      dirnames[:] = []
    for name in filenames:
      if name.lower().endswith('.json') and name != 'metadata.json':
        found.append(os.path.join(dirpath, name))
  return [p for p in sorted(found) if _is_instances(p)]


def _is_instances(path: str) -> bool:
  """Whether `path` is an instances file; a `.json` that is not JSON at all (an export cut short) is an
  InputError rather than a split silently missing."""
  try:
    with open(path, encoding='utf-8') as f:
      data = json.load(f)
  except OSError:
    return False
  except ValueError as e:
    raise InputError(f'{path} is not valid JSON ({e}); fix or remove it') from None
  return isinstance(data, dict) and isinstance(data.get('images'), list)


def load(path: str) -> dict[str, Any]:
  """An instances file as a dict with `images`, `annotations` and `categories` lists."""
  try:
    with open(path, encoding='utf-8') as f:
      data = json.load(f)
  except ValueError as e:
    raise InputError(f'{path} is not valid JSON ({e})') from None
  if not isinstance(data, dict) or not all(isinstance(data.get(k, []), list)
                                           for k in ('images', 'annotations', 'categories')):
    raise InputError(f'{path} is not a COCO instances file (images, annotations, categories lists)')
  return {k: data.get(k, []) for k in ('images', 'annotations', 'categories')}


def split_for_file(path: str, root: str, count: int) -> str | None:
  """The split an instances file states by its name or its folder's; None: split its images by hash."""
  split = folders.split_of(path)
  if split is None and os.path.dirname(path) != root:
    split = folders.split_of(os.path.dirname(path))
  if split is None and count > 1:
    raise InputError(f'{count} instances files in {root}, and {path} names no split (train, val, test)')
  return split


def _image_dirs(path: str, root: str, split: str | None) -> list[str]:
  here = os.path.dirname(path)
  dirs = [here, os.path.join(here, 'images'), root, os.path.join(root, 'images')]
  if split is not None:
    dirs += [os.path.join(root, d) for d in sorted(os.listdir(root)) if folders.split_of(d) == split]
  return list(dict.fromkeys(dirs))


def _raw_object(ann: dict, ids: set[int]) -> annotations.RawObject | str:
  """The annotation as a RawObject (1-based inclusive, as `to_boxes` reads), or the reason it is dropped."""
  bbox = ann.get('bbox')
  if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
    return 'box_malformed_dropped'
  try:
    x, y, w, h = (float(v) for v in bbox)
  except (TypeError, ValueError):
    return 'box_malformed_dropped'
  if not all(math.isfinite(v) for v in (x, y, w, h)):  # NaN (Python's json reads it), inf
    return 'box_malformed_dropped'
  if not w > 0 or not h > 0:  # as 1-based corners, a zero width would read as an inverted 1-pixel box
    return 'box_empty_dropped'
  category = ann.get('category_id')
  key = str(category) if _is_id(category) and category in ids else f'unknown category {category}'
  return annotations.RawObject(key, x + 1.0, y + 1.0, x + w, y + h, ignore=bool(ann.get('iscrowd', 0)))


def _is_id(value: Any) -> bool:
  """An image id COCO files use: an int or a string (not a list, a float or a missing key)."""
  return isinstance(value, (int, str)) and not isinstance(value, bool)


def _size(entry: dict, key: str) -> int | None:
  value = entry.get(key)
  return int(value) if isinstance(value, (int, float)) and value > 0 else None


def scan_file(path: str, root: str, split: str | None, ids: set[int], reports: folders.Reports,
              items: dict[str, list[folders.Item]]) -> None:
  """Adds the usable images of one instances file to `items` (by split); counts what it skips."""
  data = load(path)
  by_image: dict[Any, list[dict]] = collections.defaultdict(list)
  for ann in data['annotations']:
    if isinstance(ann, dict) and _is_id(ann.get('image_id')):
      by_image[ann.get('image_id')].append(ann)
    else:
      reports[split or 'train'].skip('annotation_malformed', f'{path}: {ann}'[:200])
  dirs = _image_dirs(path, root, split)
  seen_ids, seen_names = set(), set()
  for entry in data['images']:
    name = str(entry.get('file_name', '')) if isinstance(entry, dict) else ''
    where = split or folders.hash_split(name)
    if not name or not _is_id(entry.get('id')) or entry['id'] in seen_ids:
      reason = ('image_without_file_name' if not name else 'image_without_id' if not _is_id(entry.get('id'))
                else 'duplicate_image_id')
      reports[where].skip(reason, f'{path}: {entry}'[:200])
      continue
    seen_ids.add(entry['id'])
    if name in seen_names:
      reports[where].skip('duplicate_file_name', f'{path}: {name}')
      continue
    seen_names.add(name)
    # The name as written, else its last part (Label Studio writes the server's path: /data/upload/1/x.jpg).
    candidates = [os.path.join(d, n) for n in dict.fromkeys((name, os.path.basename(name))) for d in dirs]
    image = next((p for p in candidates if os.path.isfile(p)), None)
    image_annotations = by_image.pop(entry['id'], [])  # gone with a missing image, not "of an unknown image"
    if image is None:
      reports[where].skip('image_missing', f'{path}: {name}')
      continue
    objects = []
    for ann in image_annotations:
      obj = _raw_object(ann, ids)
      if isinstance(obj, str):
        reports[where].repair(obj, name)
      else:
        objects.append(obj)
    raw = annotations.RawAnnotation(name, _size(entry, 'width'), _size(entry, 'height'), tuple(objects))
    items.setdefault(where, []).append(folders.Item(os.path.splitext(name)[0], image, raw))
  for image_id, anns in by_image.items():
    for _ in anns:
      reports[split or 'train'].skip('annotation_unknown_image', f'{path}: image_id {image_id}')


def categories(files: list[str]) -> tuple[list[int], dict[int, str]]:
  """(ids some annotation uses, sorted; {id: name}) over every instances file (an id's first name wins)."""
  names, used = {}, set()
  for path in files:
    data = load(path)
    for cat in data['categories']:
      if isinstance(cat, dict) and isinstance(cat.get('id'), int):
        names.setdefault(cat['id'], str(cat.get('name', cat['id'])))
    used.update(a.get('category_id') for a in data['annotations']
                if isinstance(a, dict) and _is_id(a.get('category_id')))
  return sorted(i for i in names if i in used), names


def scan(root: str, reports: folders.Reports) -> tuple[dict[str, list[folders.Item]], list[str], dict]:
  """The items of each split, the class keys (category ids as str, label order) and metadata (with the
  `class_names`, which replace the keys in metadata.json)."""
  files = find_instance_files(root)
  if not files:
    raise InputError(f'{root} holds no COCO instances file (*.json with an "images" list)')
  ids, names = categories(files)
  if not ids:
    raise InputError(f'{root}: no class found: no annotation of {", ".join(os.path.relpath(p, root) for p in files)} '
                     f'has a category_id listed in its "categories" ({len(names)} listed)')
  items: dict[str, list[folders.Item]] = {}
  for path in files:
    scan_file(path, root, split_for_file(path, root, len(files)), set(ids), reports, items)
  unused = sorted(set(names) - set(ids))
  metadata = {'category_ids': ids, 'class_names': [names[i] for i in ids],
              'instances_files': [os.path.relpath(p, root) for p in files],
              'unused_category_ids': unused}
  return items, [str(i) for i in ids], metadata


class CocoJson(folders.FolderBuilder):
  """A COCO instances file and its photos as detection records (module docstring); `--name` names it."""

  code_path = epath.Path(__file__)
  MANUAL_DOWNLOAD_INSTRUCTIONS = 'Point manual_dir at the folder holding the instances JSON and the images.'
  CLASS_SOURCE = 'the categories the annotations use (by id)'
  RECORD = 'image of the instances files whose file was found'

  def _scan(self, root: str, reports: folders.Reports) -> tuple[dict, list[str], dict]:
    if self.builder_config.classes_file:
      raise InputError('coco_json takes its classes from the categories of the instances file, not --classes')
    return scan(root, reports)
