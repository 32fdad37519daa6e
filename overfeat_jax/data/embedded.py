"""The embedded procedural dataset: a tfds builder (array_record, no TF) with `cls_loc` and `det` views.

Why: the demo, the tests and the ablations need data that costs nothing to get and is the same everywhere
for a seed, yet rewards what OverFeat adds: objects from 14 to 56 px (4x scale range: small objects are hard
at the base scale, so multi-scale helps), anywhere in the image (fine stride helps), sometimes several (box
merging), partly occluded, over cluttered textured backgrounds with distractor strokes. See `draw.py` for
what a picture looks like; look at some with:

  python -m overfeat_jax.show_embedded --view=det --out=/tmp/embedded       # `sample_grid` as a PNG

Views (tfds BuilderConfigs of the builder `embedded`):
  cls_loc: 72x72 images, one labelled main object (`label` = its class); with probability 0.15 a second
    instance of the same class. `boxes`/`box_labels` are every box of that class (no other class is drawn).
  det: 128x128 images, 0..4 objects of any classes (15% of images have none). There is no `label` feature;
    the pipeline reports `label = -1` for it.
Records follow docs/CONVENTIONS.md: `image`, `image_id`, (`label`), `boxes` float32 [N, 4],
`box_labels` int64 [N].
Images are stored as JPEG (quality 95, no chroma subsampling), like ImageNet's, so the training pipeline's
JPEG path serves both.

Every example is drawn from `np.random.default_rng([seed, split, index])`, so a build is a pure function of
the config, whatever the order of generation.
"""

import dataclasses
import fcntl
import io
import os
from typing import Any, Iterator

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from overfeat_jax import errors
from overfeat_jax.data import draw
from overfeat_jax.data import local_builder
from overfeat_jax.errors import InputError

VIEWS = ('cls_loc', 'det')
JPEG_QUALITY = 95
_SPLIT_CODES = {'train': 0, 'test': 1}


NUM_CLASSES = 10  # a view's default class count: the first 10 of draw.CLASS_NAMES


@dataclasses.dataclass
class EmbeddedConfig(tfds.core.BuilderConfig):
  """Options of one embedded view; every field changes the data, so non-default values get their own name."""
  view: str = 'cls_loc'
  image_size: int = 72
  num_classes: int = NUM_CLASSES
  min_size: int = 14
  max_size: int = 56
  max_objects: int = 1  # det: most objects per image; cls_loc: unused (1 main object, maybe a 2nd instance).
  empty_prob: float = 0.15  # det: fraction of images without objects.
  occlusion_prob: float = 0.3
  train_size: int = 10_000
  test_size: int = 1_000
  seed: int = 0


DEFAULTS = {
    'cls_loc': dict(view='cls_loc', image_size=72, max_objects=1, train_size=10_000, test_size=1_000),
    'det': dict(view='det', image_size=128, max_objects=4, train_size=4_000, test_size=500),
}


def make_config(view: str, **options: Any) -> EmbeddedConfig:
  """The config of `view` with `options` overriding its defaults; named `view` when nothing is overridden."""
  if view not in VIEWS:
    raise InputError(f'Unknown embedded view {view!r}; expected one of {VIEWS}.')
  base_fields = {f.name for f in dataclasses.fields(tfds.core.BuilderConfig)}
  names = {f.name for f in dataclasses.fields(EmbeddedConfig)} - base_fields - {'view'}
  unknown = set(options) - names
  if unknown:
    raise InputError(f'Unknown embedded dataset option(s) {sorted(unknown)}; valid: {sorted(names)}.')
  fields = {**DEFAULTS[view], **options}
  base = EmbeddedConfig(name=view, **DEFAULTS[view])
  config = EmbeddedConfig(name=view, **fields)
  _validate(config)
  changed = '_'.join(f'{k}{fields[k]}' for k in sorted(options) if fields[k] != getattr(base, k))
  if changed:  # tfds keys builds by config name: a non-default config needs a name of its own.
    config.name = f'{view}_{changed}'.replace('.', 'p')
  config.description = f'{view} view: ' + ', '.join(f'{k}={v}' for k, v in sorted(fields.items()))
  return config


def _validate(c: EmbeddedConfig) -> None:
  if not 1 <= c.num_classes <= len(draw.CLASS_NAMES):
    raise InputError(f'num_classes must be in 1..{len(draw.CLASS_NAMES)}, got {c.num_classes}.')
  if not 4 <= c.min_size <= c.max_size <= c.image_size:
    raise InputError(f'Need 4 <= min_size <= max_size <= image_size, got {c.min_size}, {c.max_size}, '
                     f'{c.image_size}.')
  if c.train_size < 1 or c.test_size < 1 or c.max_objects < 1:
    raise InputError('train_size, test_size and max_objects must be positive.')


def draw_example(config: EmbeddedConfig, split: str, index: int) -> dict[str, Any]:
  """Draws example `index` of `split` as a record dict (uint8 image). A pure function of its arguments."""
  rng = np.random.default_rng([config.seed, _SPLIT_CODES[split], index])
  if config.view == 'cls_loc':
    label = int(rng.integers(config.num_classes))
    classes = [label] * (2 if rng.random() < 0.15 else 1)
  else:
    label = -1
    count = 0 if rng.random() < config.empty_prob else int(rng.integers(1, config.max_objects + 1))
    classes = [int(c) for c in rng.integers(config.num_classes, size=count)]
  image, boxes, box_labels = draw.draw_scene(rng, image_size=config.image_size, classes=classes,
                                             min_size=config.min_size, max_size=config.max_size,
                                             occlusion_prob=config.occlusion_prob)
  example = {'image': image, 'image_id': f'embedded_{config.view}_{split}_{index:06d}', 'boxes': boxes,
             'box_labels': box_labels}
  if config.view == 'cls_loc':
    example['label'] = label
  return example


def encode_jpeg(image: np.ndarray) -> bytes:
  """JPEG q95 4:4:4 (mean error ~3 levels): ~3x faster and 2x smaller than PNG on these noisy textures."""
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format='jpeg', quality=JPEG_QUALITY, subsampling=0)
  return buffer.getvalue()


class Embedded(local_builder.LocalBuilder):
  """tfds builder of the embedded procedural dataset (see the module docstring)."""

  SOURCE = 'its generator'  # local_builder's announcement
  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {'1.0.0': 'First release.',
                   '1.1.0': 'Calmer backgrounds and outlined objects: learnable by the CPU demo.'}
  # tfds finds its code path through `importlib_resources` (not installed) for editable installs; say it here.
  code_path = epath.Path(__file__)
  BUILDER_CONFIGS = [make_config('cls_loc'), make_config('det')]

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    features = {
        'image': tfds.features.Image(shape=(c.image_size, c.image_size, 3), encoding_format='jpeg'),
        'image_id': tfds.features.Text(),
        'boxes': tfds.features.Tensor(shape=(None, 4), dtype=np.float32),
        'box_labels': tfds.features.Tensor(shape=(None,), dtype=np.int64),
    }
    if c.view == 'cls_loc':
      features['label'] = tfds.features.ClassLabel(names=list(draw.CLASS_NAMES[:c.num_classes]))
    return self.dataset_info_from_configs(features=tfds.features.FeaturesDict(features),
                                          description=c.description)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
    del dl_manager  # Nothing to download.
    c = self.builder_config
    return {'train': self._generate_examples('train', c.train_size),
            'test': self._generate_examples('test', c.test_size)}

  def _generate_examples(self, split: str, count: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """Draws the examples in order; keys are their indices (tfds shuffles records by key hash anyway).

    Serial on purpose: a process pool would need a `__main__` guard in every script that builds the data.
    """
    for index in range(count):
      ex = draw_example(self.builder_config, split, index)
      yield index, {**ex, 'image': encode_jpeg(ex['image'])}  # Bytes: tfds stores them as given, no TF.


def build_embedded(data_dir: str, view: str, **options: Any) -> Embedded:
  """Prepares the `view` dataset under `data_dir` (reusing an existing build) and returns its builder.

  Args:
    data_dir: tfds data directory; the files go to `data_dir/embedded/<config name>/<version>`.
    view: 'cls_loc' or 'det'.
    **options: `EmbeddedConfig` fields overriding the view's defaults (image_size, num_classes, min_size,
      max_size, max_objects, empty_prob, occlusion_prob, train_size, test_size, seed).
  """
  config = make_config(view, **options)
  os.makedirs(data_dir, exist_ok=True)
  # Several processes of one multi-process run may start on a fresh data_dir at once: one builds, the others
  # wait on the lock and then find the finished build (tfds' own rename would otherwise collide).
  with open(os.path.join(data_dir, f'.embedded_{config.name}.lock'), 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      builder = _builder(data_dir, config)
      builder.download_and_prepare()
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)
  return builder


def is_built(data_dir: str, view: str, **options: Any) -> bool:
  """Whether `build_embedded(data_dir, view, **options)` would find a finished build (nothing is written)."""
  return _builder(data_dir, make_config(view, **options)).is_prepared()


def _builder(data_dir: str, config: EmbeddedConfig) -> Embedded:
  # tfds refuses a config object that reuses a registered name: pass the name for the registered ones.
  return Embedded(data_dir=data_dir, config=config.name if config.name in VIEWS else config,
                  file_format='array_record')


def sample_grid(view: str, count: int = 24, columns: int = 6, zoom: int = 3, **options: Any) -> Image.Image:
  """A grid of training examples with their boxes and class names drawn on (for looking at the data)."""
  from PIL import ImageDraw  # pylint: disable=g-import-not-at-top
  config = make_config(view, **options)
  tile = config.image_size * zoom
  rows = (count + columns - 1) // columns
  grid = Image.new('RGB', (columns * (tile + 4), rows * (tile + 4)), 'white')
  for i in range(count):
    ex = draw_example(config, 'train', i)
    im = Image.fromarray(ex['image']).resize((tile, tile), Image.NEAREST)
    pen = ImageDraw.Draw(im)
    for box, c in zip(ex['boxes'], ex['box_labels']):
      x1, y1, x2, y2 = (float(v) * zoom for v in box)
      pen.rectangle([x1, y1, x2 - 1, y2 - 1], outline=(255, 255, 0), width=2)
      pen.text((x1 + 2, y1 + 1), draw.CLASS_NAMES[c], fill=(255, 255, 0))
    grid.paste(im, ((i % columns) * (tile + 4), (i // columns) * (tile + 4)))
  return grid


if __name__ == '__main__':  # the command moved to the package top
  errors.moved_command('overfeat_jax.data.embedded', 'overfeat_jax.show_embedded')
