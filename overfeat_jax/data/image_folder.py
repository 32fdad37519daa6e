"""tfds builder `image_folder`: photos sorted into one sub-folder per class, as classification records.

  python -m overfeat_jax.build_dataset --dataset=image_folder --manual_dir=/data/my_classes --name=my_classes \
      --data_dir=/data/tfds [--classes=classes.txt] [--smaller_side=256]

Layout: `<class>/<photo>` (split by file-name hash, `folders.hash_split`: 80 % train, 20 % validation), or
`<split>/<class>/<photo>` when every sub-folder is a split name (`train`, `val`/`valid`/`validation`,
`test`). Photos in deeper folders belong to their top class folder. Classes: the folder names, sorted, or a
`--classes` file (label order; a folder it does not name is skipped, `label_unknown`). Records carry `label`
and no boxes (`boxes` [0, 4]), like CLS-LOC images without a box.
A record's `image_id` is its path under the class folders without the extension (`cat/1`, `cat/holiday/2`):
`cat/1.jpg` and `dog/1.jpg` are two photos (a stem-only id dropped every second one: field case).
Skipped and counted in `build_report.json`: a file that is not an image (`not_an_image_file`), a photo
outside any class folder (`no_class_folder`), a file whose bytes equal an earlier one's (`duplicate_photo`:
the same photo filed under two classes would teach both), two files with one id (`duplicate_file_name`:
`a.jpg` and `a.png` in one folder), unreadable images (`truncated`, `corrupt`, ...).
"""

import hashlib
import os

from etils import epath

from overfeat_jax.data import folders


def _class_photos(folder: str) -> list[str]:
  """Every file under `folder` (recursively), sorted."""
  out = []
  for dirpath, dirnames, filenames in os.walk(folder):
    dirnames.sort()
    out += [os.path.join(dirpath, f) for f in sorted(filenames) if not f.startswith('.')]
  return out


def _subdirs(root: str) -> list[str]:
  return sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith('.'))


def scan(root: str, reports: folders.Reports) -> tuple[dict[str, list[folders.Item]], list[str], dict]:
  """The items of each split, the class folder names (sorted) and metadata; counts every skip."""
  tops = _subdirs(root)
  split_layout = bool(tops) and all(d.lower() in folders.SPLIT_WORDS for d in tops)
  parents = [(os.path.join(root, d), folders.SPLIT_WORDS[d.lower()]) for d in tops] if split_layout else [
      (root, None)]
  items: dict[str, list[folders.Item]] = {}
  classes, seen, contents = set(), set(), set()
  for parent, split in parents:
    for name in sorted(os.listdir(parent)):
      path = os.path.join(parent, name)
      if os.path.isfile(path) and not name.startswith('.'):
        reports[split or folders.hash_split(name)].skip('no_class_folder', path)
    for label in _subdirs(parent):
      classes.add(label)
      for path in _class_photos(os.path.join(parent, label)):
        image_id = os.path.splitext(os.path.relpath(path, parent))[0].replace(os.sep, '/')
        where = split or folders.hash_split(image_id)
        if not folders.is_image_file(path):
          reports[where].skip('not_an_image_file', path)
          continue
        with open(path, 'rb') as f:
          digest = hashlib.sha256(f.read()).digest()
        if image_id in seen:
          reports[where].skip('duplicate_file_name', path)
        elif digest in contents:
          reports[where].skip('duplicate_photo', path)
        else:
          seen.add(image_id)
          contents.add(digest)
          items.setdefault(where, []).append(folders.Item(image_id, path, None, label))
  how = 'split folders' if split_layout else f'file-name hash ({folders.TRAIN_FRACTION:.0%} train)'
  return items, sorted(classes), {'splits_from': how}


class ImageFolder(folders.FolderBuilder):
  """Class sub-folders of photos as classification records (module docstring); `--name` names the config."""

  code_path = epath.Path(__file__)
  MANUAL_DOWNLOAD_INSTRUCTIONS = 'Point manual_dir at the folder holding one sub-folder per class.'
  WITH_LABEL = True
  CLASS_SOURCE = 'the class folder names (sorted)'
  RECORD = 'photo in a class folder'

  def _scan(self, root: str, reports: folders.Reports) -> tuple[dict, list[str], dict]:
    return scan(root, reports)
