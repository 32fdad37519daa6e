"""Class names for the release's 1000 outputs, which are in the ILSVRC2012 devkit's class-ID order.

Why: output i of the release networks is the class whose devkit `ILSVRC2012_ID` is i + 1 (1 kit fox,
2 English setter, ...), not the sorted-WordNet-ID order most later code uses (and `LOC_synset_mapping.txt` or
Caffe's `synset_words.txt` list). Names must therefore come from the devkit's `meta.mat` (parsed by
`overfeat_jax.data.annotations`), or from a names file already in devkit order; a file whose WordNet IDs are
sorted cannot be in devkit order and is refused rather than silently printing wrong names.
"""

import os
import re

from overfeat_jax.errors import InputError

_WNID = re.compile(r'^n\d{8}$')


def _meta_path(devkit: str) -> str:
  """The `meta.mat` of a devkit folder (`data/meta.mat`, or `meta.mat` at its top), or the file itself."""
  if os.path.isdir(devkit):
    for candidate in (os.path.join(devkit, 'data', 'meta.mat'), os.path.join(devkit, 'meta.mat')):
      if os.path.isfile(candidate):
        return candidate
    raise InputError(f'devkit folder {devkit} has neither data/meta.mat nor meta.mat')
  if not os.path.isfile(devkit):
    raise InputError(f'devkit path {devkit} does not exist')
  return devkit


def devkit_names(devkit: str, num_classes: int = 1000) -> list[str]:
  """Names of outputs 0..num_classes-1 from the devkit (folder or `meta.mat`): the leaf synsets by ILSVRC2012_ID."""
  # Imported here: annotations pulls in scipy.io, which the classify command only needs with --devkit.
  from overfeat_jax.data import annotations  # pylint: disable=g-import-not-at-top
  classes = annotations.devkit_classes(annotations.read_devkit_meta(_meta_path(devkit)), limit=num_classes)
  if len(classes) != num_classes:
    raise InputError(f'devkit {devkit} lists {len(classes)} classification classes, the network has {num_classes}')
  return [c.words for c in classes]


def synset_word_names(path: str, num_classes: int = 1000) -> list[str]:
  """Names from a text file with one class per line in output order, `[wnid ]words` (the WordNet ID is dropped).

  Raises InputError if the line count is not `num_classes`, or if every line starts with a WordNet ID and they
  are sorted: that is the sorted-WNID order, not the devkit order of the release's outputs.
  """
  if not os.path.isfile(path):
    raise InputError(f'synset words file {path} does not exist')
  with open(path, encoding='utf-8') as f:
    lines = [line.strip() for line in f if line.strip()]
  if len(lines) != num_classes:
    raise InputError(f'synset words file {path} has {len(lines)} non-empty lines, the network has {num_classes} '
                     'classes')
  wnids = [line.split(maxsplit=1)[0] for line in lines]
  if all(_WNID.match(w) for w in wnids) and wnids == sorted(wnids) and num_classes > 1:
    raise InputError(f'synset words file {path} is in sorted WordNet-ID order, but the release\'s outputs are in '
                     'devkit ILSVRC2012_ID order: pass the devkit with --devkit instead')
  names = []
  for line, wnid in zip(lines, wnids):
    names.append(line.split(maxsplit=1)[1] if _WNID.match(wnid) and ' ' in line else line)
  return names


def class_names(*, devkit: str | None = None, synset_words: str | None = None,
                num_classes: int = 1000) -> list[str] | None:
  """Names of the outputs from `devkit` or `synset_words` (at most one of them), or None without either."""
  if devkit and synset_words:
    raise InputError('give either a devkit or a synset words file for the class names, not both')
  if devkit:
    return devkit_names(devkit, num_classes)
  if synset_words:
    return synset_word_names(synset_words, num_classes)
  return None


def dataset_class_names(dataset: str, data_dir: str, num_classes: int) -> list[str] | None:
  """The class names a dataset carries, in output order, or None when it carries none this project can read.

  The embedded data: its drawn shapes (`draw.CLASS_NAMES`); own data (voc_folder/NAME, coco_json/NAME,
  image_folder/NAME): the built dataset's class list (`folders.class_names`, from its metadata), when it is built
  in `data_dir` and has `num_classes` names. What `predict` prints and `export` writes (they printed indices
  and wrote null for own data: field case).
  """
  if dataset.startswith('embedded'):
    from overfeat_jax.data import draw  # pylint: disable=g-import-not-at-top
    return list(draw.CLASS_NAMES[:num_classes])
  from overfeat_jax.data.build import OWN_DATA  # pylint: disable=g-import-not-at-top
  if dataset.split('/')[0] in OWN_DATA and data_dir:
    from overfeat_jax.data import folders  # pylint: disable=g-import-not-at-top
    try:
      names = folders.class_names(folders.dataset_dir(data_dir, dataset))
    except (InputError, OSError):  # not built here (a copied workdir): no names, the indices stand
      return None
    return names if len(names) == num_classes else None
  return None
