"""Real-looking labelled photos for the own-data builder tests, written in the layouts users' tools write.

Pictures: a 1/f-noise landscape (the power spectrum of natural images), with several textured objects
(ellipses and rectangles, each with its own 1/f texture and colour), phone-camera aspect 4:3; one at a phone camera's
full 4032x3024. Each folder holds one example of every bad case the builders must count; `EXPECTED_*` hold
what a correct build reports, summed over splits.
"""

import io
import json
import os

import numpy as np
from PIL import Image, ImageDraw

W, H = 160, 120
CLASSES = ('bird', 'cat', 'dog')  # sorted: labels 0, 1, 2


def texture(rng: np.random.Generator, h: int, w: int, colour: np.ndarray) -> np.ndarray:
  """1/f noise [h, w, 3] around `colour` (uint8): smooth large shapes, fine detail, like a photo's."""
  fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing='ij')
  amplitude = 1.0 / np.maximum(np.hypot(fx, fy), 1.0 / max(h, w))
  out = []
  for _ in range(3):
    spectrum = amplitude * np.exp(2j * np.pi * rng.random((h, w)))
    channel = np.real(np.fft.ifft2(spectrum))
    out.append((channel - channel.mean()) / (channel.std() + 1e-9))
  noise = np.stack(out, -1) * 0.6 + np.stack(out[:1] * 3, -1) * 0.4  # correlated channels, like luminance
  return np.clip(colour + 35.0 * noise, 0, 255).astype(np.uint8)


def photo(seed: int, objects: list[tuple[str, float, float, float, float]], size=(W, H)) -> np.ndarray:
  """A landscape with `objects` (class, x1, y1, x2, y2 in continuous pixels) drawn on it; uint8 [H, W, 3]."""
  w, h = size
  if w * h > 1_000_000:  # a phone-camera size: drawn at 1/8 and upscaled (seconds instead of minutes of FFT)
    small = photo(seed, [(n, a / 8, b / 8, c / 8, d / 8) for n, a, b, c, d in objects], (w // 8, h // 8))
    return np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC))
  rng = np.random.default_rng(seed)
  image = texture(rng, h, w, rng.uniform(60, 190, 3))
  for k, (_, x1, y1, x2, y2) in enumerate(objects):
    mask = Image.new('L', (w, h), 0)
    shape = ImageDraw.Draw(mask).ellipse if k % 2 == 0 else ImageDraw.Draw(mask).rectangle
    shape([x1, y1, x2 - 1, y2 - 1], fill=255)
    m = np.asarray(mask)[..., None] / 255.0
    image = (image * (1 - m) + texture(rng, h, w, rng.uniform(0, 255, 3)) * m).astype(np.uint8)
  return image


def jpeg(array: np.ndarray, fmt: str = 'JPEG') -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format=fmt, **({'quality': 90} if fmt == 'JPEG' else {}))
  return buffer.getvalue()


def voc_xml(filename: str | None, objects: list[tuple], size: tuple[int, int] | None = (W, H),
            difficult: tuple[int, ...] = ()) -> str:
  """VOC XML as labelImg/CVAT write it; objects are (name, xmin, ymin, xmax, ymax) as VOC states them."""
  parts = ['<annotation>', '  <folder>JPEGImages</folder>']
  if filename is not None:
    parts.append(f'  <filename>{filename}</filename>')
  if size:
    parts.append(f'  <size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>')
  for k, (name, a, b, c, d) in enumerate(objects):
    parts.append(f'  <object><name>{name}</name><pose>Unspecified</pose><truncated>{int(k == 0)}</truncated>'
                 f'<difficult>{int(k in difficult)}</difficult><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>'
                 f'<xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>')
  return '\n'.join(parts + ['</annotation>\n'])


def _write(path: str, data: bytes | str) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'wb') as f:
    f.write(data.encode() if isinstance(data, str) else data)


# (stem, objects in continuous pixels) of the good photos; VOC writes xmin = x1 + 1, COCO [x1, y1, w, h].
PHOTOS = {
    'p01': [('cat', 9.5, 19.0, 60.0, 80.0), ('dog', 69.0, 29.0, 150.0, 110.0)],
    'p02': [('dog', 4.0, 4.0, 50.0, 40.0), ('cat', 60.0, 10.0, 100.0, 70.0),
            ('bird', 110.0, 60.0, 150.0, 100.0)],
    'p03': [('bird', 20.0, 30.0, 70.0, 90.0), ('cat', 100.0, 20.0, 160.0, 100.0)],
    'p04': [('dog', 30.0, 20.0, 90.0, 100.0), ('cat', 95.0, 5.0, 155.0, 60.0)],
}
PHONE = ('phone', [('dog', 1000.0, 800.0, 2600.0, 2400.0), ('cat', 2800.0, 300.0, 3900.0, 1500.0)])


def make_voc(root: str, image_sets: bool = False) -> str:
  """A VOC folder (JPEGImages/, Annotations/, classes.txt) with every bad case once; returns root."""
  img, ann = os.path.join(root, 'JPEGImages'), os.path.join(root, 'Annotations')
  for i, (stem, objects) in enumerate(PHOTOS.items()):
    _write(f'{img}/{stem}.jpg', jpeg(photo(i, objects)))
  voc = {s: [(n, x1 + 1, y1 + 1, x2, y2) for n, x1, y1, x2, y2 in o] for s, o in PHOTOS.items()}
  _write(f'{ann}/p01.xml', voc_xml('p01.jpg', voc['p01']))
  _write(f'{ann}/p02.xml', voc_xml('p02', voc['p02'], difficult=(2,)))  # no extension; a difficult bird
  # An XML named otherwise (found through <filename>), no <size>, and a box past the right border (clipped).
  _write(f'{ann}/annotation_of_p03.xml',
         voc_xml('p03.jpg', voc['p03'][:1] + [('cat', 101, 21, 200, 100)], None))
  # p04: a box entirely outside (empty after clipping: dropped) and a class not in classes.txt (dropped).
  _write(f'{ann}/p04.xml',
         voc_xml('p04.jpg', voc['p04'] + [('dog', 170, 10, 190, 20), ('horse', 5, 5, 30, 30)]))
  _write(f'{img}/p05.jpg', jpeg(photo(5, [])))                          # an image without XML
  _write(f'{ann}/p06.xml', voc_xml('p06.jpg', voc['p01']))              # an XML without its image
  _write(f'{img}/p07.jpg', jpeg(photo(7, PHOTOS['p01'])))
  _write(f'{img}/p07.png', jpeg(photo(8, PHOTOS['p01']), 'PNG'))        # a second file named p07
  _write(f'{ann}/p07.xml', voc_xml('p07.jpg', voc['p01']))
  _write(f'{img}/p08.jpg', jpeg(photo(9, PHOTOS['p02'])))
  _write(f'{ann}/p08.xml', '<annotation><size><width>160</wi')          # does not parse
  stem, objects = PHONE
  _write(f'{img}/{stem}.jpg', jpeg(photo(10, objects, size=(4032, 3024))))
  _write(f'{ann}/{stem}.xml', voc_xml(f'{stem}.jpg', [(n, a + 1, b + 1, c, d) for n, a, b, c, d in objects],
                                      size=(4032, 3024)))
  _write(f'{root}/classes.txt', '\n'.join(CLASSES) + '\n')
  if image_sets:
    _write(f'{root}/ImageSets/Main/train.txt', 'p01\np02\np03\nphone\nmissing_one\n')  # no such photo
    _write(f'{root}/ImageSets/Main/val.txt', 'p07\n')  # p04 is in no list
  return root


# Summed over splits, with classes.txt: what the VOC build must report.
EXPECTED_VOC_SKIPPED = {'annotation_missing': 1, 'image_missing': 1, 'duplicate_file_name': 1,
                        'annotation_unreadable': 1}
EXPECTED_VOC_REPAIRED = {'box_clipped': 2, 'box_empty_dropped': 1, 'box_unknown_synset_dropped': 1,
                         'size_missing_used_image': 1}
EXPECTED_VOC_KEPT = 6  # p01-p04, p07, phone


CATEGORIES = [{'id': 3, 'name': 'cat'}, {'id': 7, 'name': 'dog'}, {'id': 12, 'name': 'bird'},
              {'id': 99, 'name': 'unused'}]  # labels: cat 0, dog 1, bird 2 (by id); 99 is used by nothing
COCO_IDS = {'cat': 3, 'dog': 7, 'bird': 12}


def make_coco(root: str, split_files: bool = False) -> str:
  """A COCO folder (images/ + instances JSON) with every bad case once; returns root."""
  images, anns = [], []

  def add_image(image_id: int, name: str, size=(W, H)) -> None:
    images.append({'id': image_id, 'file_name': name, 'width': size[0], 'height': size[1]})

  def add_box(image_id: int, category: int, bbox, iscrowd: int = 0) -> None:
    anns.append({'id': len(anns) + 1, 'image_id': image_id, 'category_id': category, 'bbox': bbox,
                 'iscrowd': iscrowd, 'area': 1.0})

  for i, (stem, objects) in enumerate(PHOTOS.items()):
    _write(f'{root}/images/{stem}.jpg', jpeg(photo(i, objects)))
    add_image(i + 1, f'{stem}.jpg')
    for name, x1, y1, x2, y2 in objects:
      crowd = int(stem == 'p02' and name == 'bird')
      add_box(i + 1, COCO_IDS[name], [x1, y1, x2 - x1, y2 - y1], iscrowd=crowd)
  add_box(3, 3, [150.0, 10.0, 40.0, 20.0])       # past the right border: clipped
  add_box(4, 7, [50.0, 50.0, 0.0, 10.0])         # zero width: dropped
  add_box(4, 55, [10.0, 10.0, 20.0, 20.0])       # a category the file does not list: dropped
  add_box(1, 3, [1.0, 2.0, 3.0])                 # not 4 numbers: dropped
  add_box(999, 3, [1.0, 2.0, 3.0, 4.0])          # an image id the file does not list
  add_image(10, 'gone.jpg')                      # the file is missing
  add_image(11, 'p01.jpg')                       # a second entry for p01.jpg
  add_image(4, 'p04_again.jpg')                  # a second image with id 4
  stem, objects = PHONE
  _write(f'{root}/images/{stem}.jpg', jpeg(photo(10, objects, size=(4032, 3024))))
  add_image(20, f'{stem}.jpg', (4032, 3024))
  for name, x1, y1, x2, y2 in objects:
    add_box(20, COCO_IDS[name], [x1, y1, x2 - x1, y2 - y1])
  data = {'images': images, 'annotations': anns, 'categories': CATEGORIES}
  if not split_files:
    _write(f'{root}/annotations/instances.json', json.dumps(data))
    return root
  train_ids = {1, 2, 3, 20, 999, 10, 11}
  for split, keep in (('train', lambda i: i in train_ids), ('val', lambda i: i not in train_ids)):
    part = {'images': [im for im in images if keep(im['id'])], 'categories': CATEGORIES,
            'annotations': [a for a in anns if keep(a['image_id'])]}
    _write(f'{root}/annotations/instances_{split}2017.json', json.dumps(part))
  return root


EXPECTED_COCO_SKIPPED = {'image_missing': 1, 'duplicate_file_name': 1, 'duplicate_image_id': 1,
                         'annotation_unknown_image': 1}
EXPECTED_COCO_REPAIRED = {'box_malformed_dropped': 1, 'box_clipped': 1, 'box_empty_dropped': 1,
                          'box_unknown_synset_dropped': 1}
EXPECTED_COCO_KEPT = 5  # p01-p04, phone


def make_image_folder(root: str) -> str:
  """`<class>/<photo>` with a stray file, a non-image and a duplicate name; returns root."""
  for k, name in enumerate(CLASSES):
    for j in range(3):
      _write(f'{root}/{name}/{name}_{j}.jpg', jpeg(photo(10 * k + j, [(name, 40, 30, 120, 90)])))
  _write(f'{root}/cat/nested/cat_deep.jpg', jpeg(photo(50, [('cat', 40, 30, 120, 90)])))
  _write(f'{root}/cat/notes.txt', 'taken on holiday')             # not an image
  _write(f'{root}/dog/cat_0.jpg', jpeg(photo(51, [])))             # the name of cat/cat_0.jpg, another photo
  _write(f'{root}/dog/copy.jpg', jpeg(photo(10, [('cat', 40, 30, 120, 90)])))  # cat/cat_0.jpg's very bytes
  _write(f'{root}/dog/dog_2.png', jpeg(photo(53, []), 'PNG'))     # dog/dog_2.jpg's id: which one is meant?
  _write(f'{root}/loose.jpg', jpeg(photo(52, [])))                 # in no class folder
  return root


EXPECTED_FOLDER_SKIPPED = {'not_an_image_file': 1, 'duplicate_photo': 1, 'duplicate_file_name': 1,
                           'no_class_folder': 1}
EXPECTED_FOLDER_KEPT = 11
