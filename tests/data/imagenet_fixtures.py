"""Writes tiny ImageNet fixtures in the EXACT on-disk layouts users hold (official archives, Kaggle, DET).

Three real CLS-LOC classes, 40x30 images, and one file for each oddity of real ImageNet (CMYK, grayscale, PNG
named .JPEG, palette PNG with transparency, truncated, empty, 1-pixel, not-an-image, boxes past the border,
inverted boxes, wrong or missing size fields, unknown synsets, missing and malformed XML). `EXPECTED_*` hold
the counts a correct builder must report.
"""

import csv
import io
import os
import tarfile

import numpy as np
from PIL import Image
import scipy.io

TENCH, GOLDFISH, SHARK = 'n01440764', 'n01443537', 'n01484850'  # sorted labels 0, 1, 2 of the 1000
WORDS = {TENCH: 'tench, Tinca tinca', GOLDFISH: 'goldfish, Carassius auratus',
         SHARK: 'great white shark, white shark, man-eater'}
# Devkit order differs from sorted order on purpose: ILSVRC2012_ID 1 = shark, 2 = tench, 3 = goldfish.
DEVKIT_ORDER = [SHARK, TENCH, GOLDFISH]
W, H = 40, 30


def pattern(seed: int, size=(W, H)) -> np.ndarray:
  """A smooth colour image (JPEG keeps it close), different for every seed; uint8 [H, W, 3]."""
  w, h = size
  yy, xx = np.mgrid[0:h, 0:w]
  rgb = [(xx * (3 + seed) + yy * 2 + 40 * seed) % 256, (yy * 5 + 17 * seed) % 256, (xx * 2 + yy + 90) % 256]
  return np.stack(rgb, -1).astype(np.uint8)


def encode(array: np.ndarray | Image.Image, fmt: str = 'JPEG', mode: str | None = None, **kw) -> bytes:
  image = array if isinstance(array, Image.Image) else Image.fromarray(array)
  if mode:
    image = image.convert(mode)
  buffer = io.BytesIO()
  image.save(buffer, format=fmt, **({'quality': 92} if fmt == 'JPEG' else {}), **kw)
  return buffer.getvalue()


def truncated(data: bytes) -> bytes:
  """The first two thirds of a JPEG: headers intact, scan data cut (a download that stopped early)."""
  return data[: len(data) * 2 // 3]


def palette_with_alpha(seed: int) -> bytes:
  """A palette PNG whose index 0 is transparent (left half of the image)."""
  image = Image.fromarray(pattern(seed)).convert('P', palette=Image.Palette.ADAPTIVE, colors=16)
  array = np.asarray(image).copy()
  array[:, : W // 2] = 0
  out = Image.fromarray(array, mode='P')
  out.putpalette(image.getpalette())
  return encode(out, 'PNG', transparency=0)


def xml(stem: str, folder: str, objects: list[tuple], size: tuple[int, int] | None = (W, H)) -> bytes:
  """An annotation as ImageNet writes it (tabs, VOC fields); objects are (wnid, xmin, ymin, xmax, ymax)."""
  size_xml = (f'\t<size>\n\t\t<width>{size[0]}</width>\n\t\t<height>{size[1]}</height>\n'
              '\t\t<depth>3</depth>\n\t</size>\n') if size else ''
  objs = ''.join(
      f'\t<object>\n\t\t<name>{w}</name>\n\t\t<pose>Unspecified</pose>\n\t\t<truncated>0</truncated>\n'
      f'\t\t<difficult>0</difficult>\n\t\t<bndbox>\n\t\t\t<xmin>{a}</xmin>\n\t\t\t<ymin>{b}</ymin>\n'
      f'\t\t\t<xmax>{c}</xmax>\n\t\t\t<ymax>{d}</ymax>\n\t\t</bndbox>\n\t</object>\n'
      for w, a, b, c, d in objects)
  return (f'<annotation>\n\t<folder>{folder}</folder>\n\t<filename>{stem}</filename>\n\t<source>\n'
          f'\t\t<database>ILSVRC_2012</database>\n\t</source>\n{size_xml}\t<segmented>0</segmented>\n{objs}'
          '</annotation>\n').encode()


def cls_loc_spec() -> dict:
  """{split: [(stem, wnid, image bytes, xml bytes or None)]}: the one truth both CLS-LOC layouts come from."""
  tr = [
      ('n01440764_1', TENCH, encode(pattern(1)), xml('n01440764_1', TENCH, [(TENCH, 11, 6, 20, 25)])),
      ('n01440764_2', TENCH, encode(pattern(2)), None),  # a training image without boxes
      # unknown synset box, a box entirely right of the image (empty after clipping), no <size>
      ('n01440764_3', TENCH, encode(pattern(3)),
       xml('n01440764_3', TENCH, [(TENCH, 1, 1, 40, 30), ('n99999999', 2, 2, 9, 9), (TENCH, 42, 3, 50, 9)],
           None)),
      ('n01443537_1', GOLDFISH, encode(pattern(4), mode='CMYK'),
       xml('n01443537_1', GOLDFISH, [(GOLDFISH, 30, 0, 45, 12)])),                     # past the border
      ('n01443537_2', GOLDFISH, encode(pattern(5), mode='L'),
       xml('n01443537_2', GOLDFISH, [(GOLDFISH, 20, 25, 5, 10)])),                     # inverted
      ('n01484850_1', SHARK, encode(pattern(6), 'PNG'),
       xml('n01484850_1', SHARK, [(SHARK, 21, 11, 60, 50)], size=(80, 60))),          # size field 2x too big
      ('n01484850_2', SHARK, truncated(encode(pattern(7))), xml('n01484850_2', SHARK, [(SHARK, 1, 1, 5, 5)])),
      ('n01484850_3', SHARK, b'', None),
      ('n01484850_4', SHARK, encode(np.zeros((1, 1, 3), np.uint8)), None),
      ('n01484850_5', SHARK, b'this is not an image\n' * 4, None),
      ('n01484850_6', SHARK, palette_with_alpha(8), None),
  ]
  va = [
      ('ILSVRC2012_val_00000001', GOLDFISH, encode(pattern(9)),
       xml('ILSVRC2012_val_00000001', 'val', [(GOLDFISH, 1, 1, 10, 10), (GOLDFISH, 21, 11, 40, 30)])),
      ('ILSVRC2012_val_00000002', TENCH, encode(pattern(10)),
       xml('ILSVRC2012_val_00000002', 'val', [(TENCH, 5, 5, 25, 20)])),
      ('ILSVRC2012_val_00000003', SHARK, encode(pattern(11)), b'<annotation><size><width>40</wi'),  # broken
      ('ILSVRC2012_val_00000004', SHARK, encode(pattern(12), mode='L'),
       xml('ILSVRC2012_val_00000004', 'val', [(SHARK, 3, 4, 30, 20)])),
  ]
  return {'train': tr, 'validation': va}


# What a correct CLS-LOC build reports (same for both layouts; the colour repairs are per image).
EXPECTED_CLS_LOC_SKIPPED = {
    'train': {'truncated': 1, 'empty': 1, 'too_small': 1, 'not_an_image': 1},
    'validation': {'annotation_unreadable': 1},
}
EXPECTED_CLS_LOC_REPAIRED = {
    'train': {'cmyk_to_rgb': 1, 'grayscale_to_rgb': 1, 'png_named_jpeg': 2, 'alpha_composited_on_white': 1,
              'box_clipped': 2, 'box_inverted_swapped': 1, 'box_unknown_synset_dropped': 1,
              'box_empty_dropped': 1, 'size_missing_used_image': 1, 'size_mismatch_rescaled': 1,
              'annotation_missing_kept_without_boxes': 2},
    'validation': {'grayscale_to_rgb': 1},
}
EXPECTED_CLS_LOC_KEPT = {'train': 7, 'validation': 4}


def _tar_bytes(members: list[tuple[str, bytes]], mode: str = 'w') -> bytes:
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode=mode) as tar:
    for name, data in members:
      info = tarfile.TarInfo(name)
      info.size = len(data)
      info.mtime = 1_300_000_000
      tar.addfile(info, io.BytesIO(data))
  return buffer.getvalue()


def _meta_mat(path_or_buffer) -> None:
  """`meta.mat` as in the devkit: a struct array `synsets` (leaves 1..K, then a non-leaf parent)."""
  fields = ['ILSVRC2012_ID', 'WNID', 'words', 'gloss', 'num_children', 'children', 'wordnet_height',
            'num_train_images']
  rows = [(float(i + 1), w, WORDS[w], f'gloss of {w}', 0.0, np.zeros((1, 0)), 0.0, 1300.0)
          for i, w in enumerate(DEVKIT_ORDER)]
  rows.append((1001.0, 'n01439121', 'cyprinid', 'a parent synset', 2.0, np.array([[2.0, 3.0]]), 1.0, 0.0))
  synsets = np.empty((len(rows), 1), dtype=[(f, object) for f in fields])
  for i, row in enumerate(rows):
    for f, v in zip(fields, row):
      synsets[i, 0][f] = np.array([[v]]) if isinstance(v, float) else v
  scipy.io.savemat(path_or_buffer, {'synsets': synsets})


def meta_mat_bytes() -> bytes:
  buffer = io.BytesIO()
  _meta_mat(buffer)
  return buffer.getvalue()


def write_official(root: str, spec: dict | None = None) -> str:
  """The official archives: train tar of per-synset tars, val tar, devkit tar.gz, two bbox tar.gz."""
  spec = spec or cls_loc_spec()
  os.makedirs(root, exist_ok=True)
  inner = {}
  for stem, wnid, data, _ in spec['train']:
    inner.setdefault(wnid, []).append((f'{stem}.JPEG', data))
  outer = [(f'{w}.tar', _tar_bytes(m)) for w, m in inner.items()]
  _write(root, 'ILSVRC2012_img_train.tar', _tar_bytes(outer))
  _write(root, 'ILSVRC2012_img_val.tar', _tar_bytes([(f'{s}.JPEG', d) for s, _, d, _ in spec['validation']]))
  truth = ''.join(f'{DEVKIT_ORDER.index(w) + 1}\n' for _, w, _, _ in spec['validation'])
  _write(root, 'ILSVRC2012_devkit_t12.tar.gz', _tar_bytes([
      ('ILSVRC2012_devkit_t12/data/meta.mat', meta_mat_bytes()),
      ('ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt', truth.encode()),
      ('ILSVRC2012_devkit_t12/readme.txt', b'devkit\n')], 'w:gz'))
  _write(root, 'ILSVRC2012_bbox_train_v2.tar.gz', _tar_bytes(
      [(f'{w}/{s}.xml', x) for s, w, _, x in spec['train'] if x is not None], 'w:gz'))
  _write(root, 'ILSVRC2012_bbox_val_v3.tgz', _tar_bytes(
      [(f'val/{s}.xml', x) for s, _, _, x in spec['validation'] if x is not None], 'w:gz'))
  return root


def _csv_rows(entries: list) -> list[list[str]]:
  from overfeat_jax.data import annotations  # only for well-formed XML: CSV lines come from the same boxes
  rows = []
  for stem, _, _, x in entries:
    if x is None:
      continue
    try:
      objects = annotations.parse_voc_xml(x).objects
    except ValueError:
      continue
    rows.append([stem, ' '.join(f'{o.wnid} {o.xmin:g} {o.ymin:g} {o.xmax:g} {o.ymax:g}' for o in objects)])
  return rows


def write_kaggle(root: str, spec: dict | None = None) -> str:
  """The extracted layout: ILSVRC/Data/CLS-LOC, ILSVRC/Annotations/CLS-LOC, LOC_* files."""
  spec = spec or cls_loc_spec()
  for stem, wnid, data, x in spec['train']:
    _write(root, f'ILSVRC/Data/CLS-LOC/train/{wnid}/{stem}.JPEG', data)
    if x is not None:
      _write(root, f'ILSVRC/Annotations/CLS-LOC/train/{wnid}/{stem}.xml', x)
  for stem, _, data, x in spec['validation']:
    _write(root, f'ILSVRC/Data/CLS-LOC/val/{stem}.JPEG', data)
    if x is not None:
      _write(root, f'ILSVRC/Annotations/CLS-LOC/val/{stem}.xml', x)
  _write(root, 'LOC_synset_mapping.txt', ''.join(f'{w} {WORDS[w]}\n' for w in sorted(WORDS)).encode())
  for split, name in (('train', 'train'), ('validation', 'val')):
    rows = _csv_rows(spec[split])
    if split == 'validation':  # the malformed-XML image still has its label line in the CSV, as on Kaggle
      rows.append(['ILSVRC2012_val_00000003', f'{SHARK} 1 1 5 5'])
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator='\n').writerows([['ImageId', 'PredictionString']] + rows)
    _write(root, f'LOC_{name}_solution.csv', buffer.getvalue().encode())
  return root


def _write(root: str, rel: str, data: bytes) -> None:
  path = os.path.join(root, rel)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'wb') as f:
    f.write(data)


# ----- DET -----
ACCORDION, AIRPLANE, ANT = 'n02672831', 'n02691156', 'n02219486'  # sorted: ant 0, accordion 1, airplane 2
DET_MAP = [(ACCORDION, 1, 'accordion'), (AIRPLANE, 2, 'airplane'), (ANT, 3, 'ant')]
EXPECTED_DET_SKIPPED = {'train': {'image_missing': 1, 'image_set_line_malformed': 1, 'truncated': 1},
                        'validation': {'blacklist_line_malformed': 1, 'blacklist_image_unknown': 1,
                                       'blacklist_class_unknown': 1}}
EXPECTED_DET_REPAIRED = {'train': {'annotation_missing_kept_without_boxes': 1,
                                   'box_unknown_synset_dropped': 1, 'box_clipped': 1, 'cmyk_to_rgb': 1},
                         'validation': {}}
EXPECTED_DET_KEPT = {'train': 4, 'validation': 2}


def write_det(root: str, with_map: bool = True, with_blacklist: bool = True) -> str:
  """The extracted ILSVRC DET layout with positives, negatives (no objects / no XML) and bad files; the devkit's
  validation blacklist (`image_index WNID`) names (val image 1, ant) and three bad lines."""
  tr = [
      ('ILSVRC2013_train/n02672831/n02672831_1', encode(pattern(20)), [(ACCORDION, 3, 4, 20, 25)]),
      ('ILSVRC2014_train_0000/ILSVRC2014_train_00000001', encode(pattern(21), mode='CMYK'),
       [(AIRPLANE, 1, 1, 40, 15), (ANT, 30, 20, 44, 30), ('n00000001', 2, 2, 4, 4)]),
      ('ILSVRC2014_train_0000/ILSVRC2014_train_00000002', encode(pattern(22)), []),   # negative, empty XML
      ('ILSVRC2014_train_0000/ILSVRC2014_train_00000004', encode(pattern(23)), None),  # negative, no XML
      ('ILSVRC2014_train_0000/ILSVRC2014_train_00000005', truncated(encode(pattern(24))), []),  # truncated
  ]
  for rel, data, objects in tr:
    _write(root, f'ILSVRC/Data/DET/train/{rel}.JPEG', data)
    if objects is not None:
      _write(root, f'ILSVRC/Annotations/DET/train/{rel}.xml', xml(os.path.basename(rel), 'train', objects))
  va = [('ILSVRC2013_val_00000001', [(ANT, 5, 5, 15, 15)]), ('ILSVRC2013_val_00000002', [])]
  for i, (stem, objects) in enumerate(va):
    _write(root, f'ILSVRC/Data/DET/val/{stem}.JPEG', encode(pattern(30 + i)))
    _write(root, f'ILSVRC/Annotations/DET/val/{stem}.xml', xml(stem, 'val', objects))
  sets = 'ILSVRC/ImageSets/DET'
  _write(root, f'{sets}/train_1.txt', (f'{tr[0][0]} 1\n{tr[1][0]} -1\n{tr[2][0]} -1\n'
                                       'ILSVRC2014_train_0000/ILSVRC2014_train_00000003 -1\n').encode())
  _write(root, f'{sets}/train_2.txt', (f'{tr[1][0]} 1\n{tr[3][0]} -1\n{tr[4][0]} -1\nbroken line with words\n'
                                       ).encode())
  _write(root, f'{sets}/val.txt', b'ILSVRC2013_val_00000001 1\nILSVRC2013_val_00000002 2\n')
  if with_map:
    _write(root, 'ILSVRC/devkit/data/map_det.txt', ''.join(f'{w} {i} {n}\n' for w, i, n in DET_MAP).encode())
  if with_blacklist:
    _write(root, 'ILSVRC/devkit/data/ILSVRC2014_det_validation_blacklist.txt',
           f'1 {ANT}\n1 {ANT}\n\nnot a line\n9 {ANT}\n2 n00000009\n'.encode())
  return root
