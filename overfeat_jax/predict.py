"""Classify, localize or detect objects in image files with a trained workdir; print JSON, draw PNGs.

  python -m overfeat_jax.predict --workdir=workdir/demo --task=detection img1.png img2.jpg --draw=/tmp/out
  python -m overfeat_jax.predict --workdir=workdir/demo --task=localization --json img.png

The stage's parameters come from `<workdir>/<task>/checkpoints` (latest step; `--checkpoint` names another
checkpoint directory) and its settings from `<workdir>/config.json` (the resolved training config the trainer
saved) or from `--config` when given, so the network, scales and merge options (`box.merge`, `box.threshold`,
`box.merge_average`; a config saved before `merge_average` existed merges with 'pair') are those the stage was
evaluated with. Each image is resized to the
stage's evaluation view (a square of `eval.resize` / `box.eval_size` pixels, `preprocess.eval_view`: the same
pixels as the trainer's evaluation, docs/ARCHITECTURE.md "One image path"), and boxes are mapped back to the
original image's pixels (project convention: `x1, y1, x2, y2`, continuous, `x2` exclusive).

Many inputs: every usable image is predicted (and drawn); each unusable one (missing, not an image, a JPEG with
more than 5 % of its rows missing: docs/data_imagenet.md "Truncated JPEGs") is named on one stderr line, and the
command then exits with status 2. EXIF orientation is ignored unless `--exif_transpose` (boxes are then in the
turned image's pixels). Drawings are named by `overfeat_jax.output_names` (`a/x.png`, `b/x.png` -> `a_x_...`,
`b_x_...`); the same file given twice is refused up front (exit 2).
"""

import io
import json
import os
from typing import Any, Sequence

import jax
import numpy as np
from absl import flags
from ml_collections import config_flags

from overfeat_jax import cli, output_names, storage, tasks
from overfeat_jax.config_files import CONFIG_FILE, load_config, settings_from_config
from overfeat_jax.data import class_names as class_names_lib
from overfeat_jax.data import images as image_lib
from overfeat_jax.data.preprocess import eval_view
from overfeat_jax.errors import InputError
from overfeat_jax.output_names import distinct_stems
from overfeat_jax.inference import draw as draw_lib
from overfeat_jax.settings import TASK_NAMES, WITH_BACKGROUND, StageSettings
from overfeat_jax.tasks.task import Task


def training_config(config, workdir: str | None):
  """`--config` if given, else the config the workdir was trained with (`<workdir>/config.json`)."""
  if config is not None:
    return config
  saved = load_config(workdir) if workdir else None
  if saved is None:
    where = os.path.join(workdir, CONFIG_FILE) if workdir else 'no --workdir'
    raise InputError(f'no training config ({where}); pass --config=<the config file the workdir was trained '
                     f'with>[:arg].')
  return saved


def stage_task(config, task: str) -> Task:
  """The stage's task (`tasks.TASKS`), built from its typed settings as the trainer builds it.

  Raises:
    InputError: the config has no section for a box stage, or settings it cannot read.
  """
  if task != 'classification' and task not in config:
    raise InputError(f'the config has no {task!r} section; pass the config the workdir was trained with.')
  return tasks.make(settings_from_config(config, task))


def load_params(workdir: str, stage: Task, checkpoint: str | None) -> Any:
  """The stage's params from `checkpoint` (default `<workdir>/<stage>/checkpoints`, latest step).

  Raises:
    InputError: no such directory or checkpoint; a checkpoint whose params are not the stage network's (e.g.
      another stage's checkpoints: names and shapes are compared before any array is read).
  """
  from overfeat_jax.checkpoint.manager import restore_params  # pylint: disable=g-import-not-at-top
  directory = checkpoint or os.path.join(workdir, stage.name, 'checkpoints')
  if not storage.path(directory).is_dir():
    raise InputError(f'no checkpoint directory {directory}; train the {stage.name} stage first or pass '
                     '--checkpoint.')
  expected = jax.eval_shape(stage.init_params, jax.random.key(0))
  return restore_params(directory, expected=expected, what=f'the {stage.name} stage\'s network')[1]


def class_names(settings: StageSettings) -> list[str]:
  """Names of the stage's classes: its dataset's (`class_names.dataset_class_names`: the embedded data's, own
  data's), else the class indices as text."""
  names = class_names_lib.dataset_class_names(settings.dataset, settings.data_dir, settings.num_classes)
  return names if names is not None else [str(i) for i in range(settings.num_classes)]


def predict_one(task: Task, fn, params, image: np.ndarray, top: int) -> list[dict[str, Any]]:
  """Predictions for one RGB uint8 image [H, W, 3] by the task's predictor `fn` (`Task.predictor`, jitted) on
  its view (a square of `task.predictor_size` pixels): the `top` classes and scores, or the `top` localization
  guesses, or every detection, with boxes in the image's pixels (`x1, y1, x2, y2`, clipped to the image)."""
  size = task.predictor_size
  height, width = image.shape[:2]
  view, _ = eval_view(image, 'resize', size)  # the one image path: the eval pipeline's `resize` view
  out = jax.tree.map(np.asarray, fn(params, view[None]))
  if 'boxes' not in out:  # class scores only
    scores = out['scores'][0]
    best = np.argsort(-scores, kind='stable')[:top]
    return [{'class': int(c), 'score': float(scores[c])} for c in best]
  sx, sy = width / size, height / size
  preds = []
  for cls, box, score in zip(out['classes'][0], out['boxes'][0], out['scores'][0]):
    if cls < 0:
      continue
    b = (np.asarray(box, np.float64) * [sx, sy, sx, sy]).clip(0, [width, height, width, height])
    preds.append({'class': int(cls), 'box': [round(float(v), 2) for v in b], 'score': float(score)})
  return preds if task.name in WITH_BACKGROUND else preds[:top]  # detections: all above box.score_threshold


def predict_files(paths: Sequence[str], *, task: str, config, workdir: str, checkpoint: str | None = None,
                  top: int = 5, exif_transpose: bool = False) -> list[dict[str, Any]]:
  """Runs the stage on every image file; one record per image, in order.

  A usable image gives {`image`, `task`, `height`, `width`, `predictions`}; an unusable one {`image`, `task`,
  `error`} (the one-sentence `InputError` message), and the other images still run. `exif_transpose` turns each
  image by its EXIF orientation first (heights, widths and boxes are then those of the turned image).
  """
  if task not in TASK_NAMES:
    raise InputError(f'task must be one of {TASK_NAMES}, got {task!r}.')
  stage = stage_task(config, task)
  params = load_params(workdir, stage, checkpoint)
  fn = jax.jit(stage.predictor)
  names = class_names(stage.settings)
  records = []
  for path in paths:
    try:
      image = image_lib.load_rgb(path, exif_transpose=exif_transpose)
    except InputError as e:
      records.append({'image': path, 'task': task, 'error': str(e)})
      continue
    preds = predict_one(stage, fn, params, image, top)
    for p in preds:
      p['name'] = names[p['class']] if p['class'] < len(names) else str(p['class'])
    records.append({'image': path, 'task': task, 'height': int(image.shape[0]), 'width': int(image.shape[1]),
                    'predictions': preds})
  return records


def draw_records(records: list[dict[str, Any]], out_dir: str, exif_transpose: bool = False) -> list[str]:
  """Saves each usable image with its predictions drawn as `<out_dir>/<name>_<task>.png`, `name` by
  `output_names.distinct_stems` over all records (`out_dir` may be a gs:// URL; each PNG is written whole,
  `storage.write_atomic`); returns the paths. PNGs of an earlier run are replaced, named in one stderr line
  (`output_names.note_replaced`). Raises `InputError` for the same image twice."""
  storage.makedirs(out_dir)
  written, replaced = [], []
  stems = distinct_stems([r['image'] for r in records])  # over every input, so names do not depend on failures
  for r, stem in zip(records, stems):
    if 'error' in r:
      continue
    preds = [p for p in r['predictions'] if 'box' in p]
    image = image_lib.load_rgb(r['image'], exif_transpose=exif_transpose)
    title = None if preds else ', '.join(f"{p['name']} {p['score']:.2f}" for p in r['predictions'][:3])
    table = {p['class']: p['name'] for p in r['predictions']}
    names = [table.get(i, str(i)) for i in range(max(table, default=-1) + 1)]
    im = draw_lib.draw_predictions(image, [p['box'] for p in preds], [p['class'] for p in preds],
                                   [p['score'] for p in preds], names, title=title)
    path = os.path.join(out_dir, f"{stem}_{r['task']}.png")
    png = io.BytesIO()
    im.save(png, format='PNG')
    replaced += output_names.existing([path])
    storage.write_atomic(path, png.getvalue())
    written.append(path)
  output_names.note_replaced(replaced)
  return written


_CONFIG = config_flags.DEFINE_config_file('config', None, 'The training config (default: <workdir>/config.json).',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Training workdir (holds <task>/checkpoints).')
_CHECKPOINT = flags.DEFINE_string('checkpoint', None, 'A checkpoint directory instead of <workdir>/<task>/checkpoints.')
_TASK = flags.DEFINE_enum('task', 'detection', list(TASK_NAMES), 'Which stage to run.')
_DRAW = flags.DEFINE_string('draw', None, 'Directory for PNGs with the predictions drawn.')
_JSON = flags.DEFINE_bool('json', False, 'Print one JSON object per image (else one text line per prediction).')
_TOP = flags.DEFINE_integer('top', 5, 'Guesses per image for classification and localization.')
_EXIF = flags.DEFINE_bool('exif_transpose', False, 'Turn each image by its EXIF orientation tag first (boxes in '
                          'the turned image); off: the stored pixels, as ILSVRC boxes are.')


def main(argv: list[str]) -> None:
  paths = argv[1:]
  if not paths:
    raise InputError('give at least one image file.')
  if not _WORKDIR.value and not _CHECKPOINT.value:
    raise InputError('give --workdir (or --checkpoint).')
  if _WORKDIR.value and not storage.path(_WORKDIR.value).is_dir():
    what = 'is a file' if storage.path(_WORKDIR.value).exists() else 'does not exist'
    raise InputError(f'--workdir={_WORKDIR.value} {what}: give the training run\'s folder.')
  if _DRAW.value:
    distinct_stems(paths)  # the same file twice: refused before any work
  config = training_config(_CONFIG.value, _WORKDIR.value)
  records = predict_files(paths, task=_TASK.value, config=config, workdir=_WORKDIR.value or '',
                          checkpoint=_CHECKPOINT.value, top=_TOP.value, exif_transpose=_EXIF.value)
  failed = [r for r in records if 'error' in r]
  for r in failed:
    cli.print_error(r['error'])
  for r in records:
    if _JSON.value:
      print(json.dumps(r))
    else:
      for p in r.get('predictions', ()):  # an unusable image: its line is on stderr
        box = ' '.join(f'{v:.1f}' for v in p.get('box', []))
        print(f"{r['image']}\t{p['name']}\t{p['score']:.4f}\t{box}".rstrip())
  if _DRAW.value:
    written = draw_records(records, _DRAW.value, exif_transpose=_EXIF.value)
    if not _JSON.value:
      print('\n'.join(f'drew {path}' for path in written))
  if failed:
    raise SystemExit(2)  # after every usable image: each unusable one was named above


if __name__ == '__main__':
  cli.run(main)
