r"""Writes the embedded detection data as a PASCAL VOC folder and as a COCO instances file (and its images).

  python -m overfeat_jax.write_folders --out=/tmp/embedded_det_folders     # the det view: 4,000 + 500
  python -m overfeat_jax.write_folders --out=/tmp/small --train_size=64 --test_size=16

writes `OUT/voc/{JPEGImages,Annotations,ImageSets/Main/{train,test}.txt,classes.txt}` and
`OUT/coco/{images/,annotations/instances_{train,test}.json}`: the files a labelling tool would give a user,
for the same pictures the demo's detection stage trains on. Built back with `voc_folder` / `coco_json`
(`--smaller_side=0`, and for VOC `--classes=OUT/voc/classes.txt`), the records equal the embedded `det`
view's: the same JPEG bytes (`embedded.encode_jpeg`) and the same boxes (VOC's 1-based `xmin = x1 + 1`, COCO's `[x1, y1, x2 - x1, y2 - y1]`, both written exactly).
Why: it is the demo's reach into the own-data path (docs/own_data.md): build, train and evaluate a folder,
with the embedded stage's mAP to compare against.
"""

import json
import os
from typing import Any, Iterator
from xml.sax.saxutils import escape

from overfeat_jax import errors
from overfeat_jax.data import draw
from overfeat_jax.data import embedded

SPLITS = ('train', 'test')


def det_records(split: str, count: int, **options: Any) -> Iterator[dict[str, Any]]:
  """The embedded `det` view's records of `split` (uint8 images), drawn as its builder draws them."""
  config = embedded.make_config('det', **options)
  for index in range(count):
    yield embedded.draw_example(config, split, index)


def _number(value: float) -> str:
  return repr(float(value))  # shortest exact decimal: the builder reads back the same float


def voc_xml(record: dict[str, Any], class_names: list[str]) -> str:
  """One record's annotation as VOC XML (1-based inclusive `xmin = x1 + 1`, `xmax = x2`, floats kept)."""
  h, w = record['image'].shape[:2]
  objects = ''.join(
      f'  <object>\n    <name>{escape(class_names[c])}</name>\n    <pose>Unspecified</pose>\n'
      f'    <truncated>0</truncated>\n    <difficult>0</difficult>\n    <bndbox>\n'
      f'      <xmin>{_number(b[0] + 1)}</xmin>\n      <ymin>{_number(b[1] + 1)}</ymin>\n'
      f'      <xmax>{_number(b[2])}</xmax>\n      <ymax>{_number(b[3])}</ymax>\n    </bndbox>\n  </object>\n'
      for b, c in zip(record['boxes'].astype(float), record['box_labels']))
  return (f'<annotation>\n  <folder>JPEGImages</folder>\n  <filename>{record["image_id"]}.jpg</filename>\n'
          f'  <size>\n    <width>{w}</width>\n    <height>{h}</height>\n    <depth>3</depth>\n  </size>\n'
          f'{objects}</annotation>\n')


def write_voc(out: str, splits: dict[str, list[dict]], class_names: list[str]) -> str:
  """Writes `out/{JPEGImages,Annotations,ImageSets/Main}` and `out/classes.txt` (the label order, for the
  builder's `--classes`: sorted names would not be the embedded classifier's order); returns `out`."""
  for sub in ('JPEGImages', 'Annotations', os.path.join('ImageSets', 'Main')):
    os.makedirs(os.path.join(out, sub), exist_ok=True)
  with open(os.path.join(out, 'classes.txt'), 'w', encoding='utf-8') as f:
    f.write(''.join(f'{n}\n' for n in class_names))
  for split, records in splits.items():
    for r in records:
      with open(os.path.join(out, 'JPEGImages', f'{r["image_id"]}.jpg'), 'wb') as f:
        f.write(embedded.encode_jpeg(r['image']))
      with open(os.path.join(out, 'Annotations', f'{r["image_id"]}.xml'), 'w', encoding='utf-8') as f:
        f.write(voc_xml(r, class_names))
    with open(os.path.join(out, 'ImageSets', 'Main', f'{split}.txt'), 'w', encoding='utf-8') as f:
      f.write(''.join(f'{r["image_id"]}\n' for r in records))
  return out


def coco_instances(records: list[dict], class_names: list[str]) -> dict[str, Any]:
  """COCO instances of `records`: category id = class index + 1 (COCO's ids start at 1)."""
  images, anns = [], []
  for i, r in enumerate(records):
    h, w = r['image'].shape[:2]
    images.append({'id': i + 1, 'file_name': f'{r["image_id"]}.jpg', 'width': w, 'height': h})
    for b, c in zip(r['boxes'].astype(float), r['box_labels']):
      bw, bh = b[2] - b[0], b[3] - b[1]
      anns.append({'id': len(anns) + 1, 'image_id': i + 1, 'category_id': int(c) + 1, 'iscrowd': 0,
                   'bbox': [float(b[0]), float(b[1]), bw, bh], 'area': bw * bh})
  categories = [{'id': i + 1, 'name': n, 'supercategory': 'shape'} for i, n in enumerate(class_names)]
  return {'images': images, 'annotations': anns, 'categories': categories}


def write_coco(out: str, splits: dict[str, list[dict]], class_names: list[str]) -> str:
  """Writes `out/images/` and `out/annotations/instances_<split>.json`; returns `out`."""
  os.makedirs(os.path.join(out, 'images'), exist_ok=True)
  os.makedirs(os.path.join(out, 'annotations'), exist_ok=True)
  for split, records in splits.items():
    for r in records:
      with open(os.path.join(out, 'images', f'{r["image_id"]}.jpg'), 'wb') as f:
        f.write(embedded.encode_jpeg(r['image']))
    with open(os.path.join(out, 'annotations', f'instances_{split}.json'), 'w', encoding='utf-8') as f:
      json.dump(coco_instances(records, class_names), f)
  return out


def write_embedded_det(out: str, **options: Any) -> tuple[str, str]:
  """Writes the `det` view (its `EmbeddedConfig` options, e.g. train_size) as `out/voc` and `out/coco`."""
  config = embedded.make_config('det', **options)
  sizes = {'train': config.train_size, 'test': config.test_size}
  splits = {s: list(det_records(s, sizes[s], **options)) for s in SPLITS}
  names = list(draw.CLASS_NAMES[:config.num_classes])
  return (write_voc(os.path.join(out, 'voc'), splits, names),
          write_coco(os.path.join(out, 'coco'), splits, names))


if __name__ == '__main__':  # the command moved to the package top
  errors.moved_command('overfeat_jax.data.write_folders', 'overfeat_jax.write_folders')
