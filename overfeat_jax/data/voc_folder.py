"""tfds builder `voc_folder`: a folder of photos labelled in PASCAL VOC XML (labelImg, CVAT, Roboflow).

  python -m overfeat_jax.build_dataset --dataset=voc_folder --manual_dir=/data/my_photos --name=my_photos \
      --data_dir=/data/tfds [--classes=/data/my_photos/classes.txt] [--smaller_side=256]

Layout (folder names compared case-insensitively): images in `JPEGImages/` or `images/`, XML in
`Annotations/`, `annots/` or `annotations/`; or both side by side in the folder itself (labelImg's default). An XML belongs to
the image with its own stem, else to the image its `<filename>` names (with or without extension). Splits:
`ImageSets/Main/{train,val,test}.txt` (`trainval.txt` when there is no `train.txt`) when present, else by
file-name hash (`folders.hash_split`: 80 % train, 20 % validation). Classes: the `<name>`s of the XML, sorted,
or a `--classes` file (one name per line, in label order).

Per object: float coordinates are read as VOC's 1-based inclusive pixels (`x1 = xmin - 1, x2 = xmax`, the
project convention of docs/CONVENTIONS.md); `<difficult>1</difficult>` objects go to `ignore_boxes` (kept out
of training, ignored by the detection evaluation: metrics.detection); `<truncated>` and `<pose>` are read
past; `<size>` missing or different from the image: the image's size is used and the boxes rescaled
(`annotations.to_boxes`' rules), except a phone photo labelled as viewers show it (`<size>` is the stored size
turned a quarter, EXIF orientation 5-8): stored turned, boxes kept (`exif_transposed`;
`imagenet_cls_loc.labelled_turned`, the same for `coco_json`).
What is skipped or repaired, and counted in `build_report.json` (`python -m overfeat_jax.build_dataset` prints
it): an XML without its image (`image_missing`), an image without XML (`annotation_missing`; to keep a photo
with no object, give it an XML without `<object>`), an XML that does not parse (`annotation_unreadable`), two
images with one stem (`duplicate_file_name`), an image named in no split file (`not_in_image_sets`, in the
pseudo-split `unassigned`), unreadable images (`truncated`, `corrupt`, ...), and per box: outside the image
(`box_clipped`), zero area (`box_empty_dropped`), a class not in the `--classes` file
(`box_unknown_synset_dropped`), inverted corners (`box_inverted_swapped`).
"""

import os
from typing import Any

from etils import epath

from overfeat_jax.data import annotations
from overfeat_jax.data import folders
from overfeat_jax.errors import InputError

IMAGE_DIRS = ('JPEGImages', 'images')
ANNOTATION_DIRS = ('Annotations', 'annots', 'annotations')
SPLIT_FILES = (('train', 'train'), ('validation', 'val'), ('test', 'test'))


class VocLayout:
  """Where the images, the XML and the split lists of a VOC-style folder are."""

  def __init__(self, root: str):
    self.root = root
    self.images = folders.first_dir(root, IMAGE_DIRS)
    self.annotations = folders.first_dir(root, ANNOTATION_DIRS)
    flat = any(n.lower().endswith('.xml') for n in os.listdir(root))
    if self.images is None and self.annotations is None and flat:  # labelImg: XML next to each photo
      self.images = self.annotations = root
    if self.images is None or self.annotations is None:
      raise InputError(f'{root} holds no VOC layout: expected {"/ or ".join(IMAGE_DIRS)}/ and '
                       f'{"/ or ".join(ANNOTATION_DIRS)}/ (or .xml files next to the images)')
    main = os.path.join(root, 'ImageSets', 'Main')
    self.split_files = {}
    for split, stem in SPLIT_FILES:
      candidates = (stem, 'trainval') if split == 'train' else (stem,)
      for name in candidates:
        path = os.path.join(main, f'{name}.txt')
        if os.path.isfile(path):
          self.split_files[split] = path
          break


def read_split_files(layout: VocLayout, reports: folders.Reports) -> dict[str, str]:
  """{stem: split} from ImageSets/Main (the first list naming a stem wins; a repeat is counted)."""
  out = {}
  for split, path in layout.split_files.items():
    with open(path, encoding='utf-8') as f:
      for line in f:
        parts = line.split()
        if not parts:
          continue
        if parts[0] in out:
          reports[split].skip('listed_in_two_image_sets', f'{path}: {parts[0]}')
          continue
        out[parts[0]] = split
  return out


def _parsed_annotations(folder: str, reports: folders.Reports, split_for) -> dict[str, Any]:
  """{XML stem: RawAnnotation, or None for an XML that does not parse (counted here, once)}."""
  out = {}
  for name in sorted(os.listdir(folder)):
    if not name.lower().endswith('.xml'):
      continue
    stem, path = os.path.splitext(name)[0], os.path.join(folder, name)
    try:
      out[stem] = annotations.parse_voc_xml(path, name=path)
    except InputError as e:
      reports[split_for(stem)].skip('annotation_unreadable', f'{path}: {e}')
      out[stem] = None
  return out


def _image_for(stem: str, ann: annotations.RawAnnotation, images: dict[str, str]) -> str | None:
  """The stem of the image an XML belongs to: its own stem, else its `<filename>` (extension optional)."""
  if stem in images:
    return stem
  if ann.filename:
    named = os.path.basename(ann.filename)
    named = os.path.splitext(named)[0] if folders.is_image_file(named) else named
    if named in images:
      return named
  return None


def scan(root: str, reports: folders.Reports) -> tuple[dict[str, list[folders.Item]], list[str], dict]:
  """The items of each split, the class names met (sorted) and metadata; counts every skip in `reports`."""
  layout = VocLayout(root)
  listed = read_split_files(layout, reports) if layout.split_files else None
  split_for = (lambda s: listed.get(s, folders.UNASSIGNED)) if listed is not None else folders.hash_split
  images = folders.images_by_stem(layout.images, reports, split_for)
  parsed = _parsed_annotations(layout.annotations, reports, split_for)
  pairs, used = {}, set()
  for stem, ann in parsed.items():
    if ann is None:  # its image (same stem) is not counted again as lacking an annotation
      used.add(stem)
      continue
    image = _image_for(stem, ann, images)
    if image is None or image in used:
      reports[split_for(stem)].skip('image_missing', os.path.join(layout.annotations, stem + '.xml'))
      continue
    used.add(image)
    pairs[image] = ann
  for stem in sorted(set(images) - used):
    reports[split_for(stem)].skip('annotation_missing', images[stem])
  splits: dict[str, list[folders.Item]] = {}
  for stem in sorted(pairs):
    split = split_for(stem)
    if split == folders.UNASSIGNED:
      reports[split].skip('not_in_image_sets', images[stem])
      continue
    for _ in range(pairs[stem].malformed):  # an object without usable coordinates (annotations.parse_voc_xml)
      reports[split].repair('box_malformed_dropped', images[stem])
    splits.setdefault(split, []).append(folders.Item(stem, images[stem], pairs[stem]))
  for stem in sorted(set(listed or ()) - set(images) - set(parsed)):
    reports[listed[stem]].skip('image_missing', f'{stem} (listed in ImageSets/Main)')
  # Difficult objects name classes too; an object without a name is no class (its box: unknown, dropped).
  names = sorted({o.wnid for a in pairs.values() for o in a.objects if o.wnid})
  how = 'ImageSets/Main' if listed is not None else f'file-name hash ({folders.TRAIN_FRACTION:.0%} train)'
  return splits, names, {'splits_from': how}


class VocFolder(folders.FolderBuilder):
  """A VOC-XML-labelled photo folder as detection records (module docstring); `--name` names the config."""

  code_path = epath.Path(__file__)  # tfds' code path lookup needs importlib_resources for editable installs
  MANUAL_DOWNLOAD_INSTRUCTIONS = 'Point manual_dir at the folder holding JPEGImages/ and Annotations/.'

  def _scan(self, root: str, reports: folders.Reports) -> tuple[dict, list[str], dict]:
    return scan(root, reports)
