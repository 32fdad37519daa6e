r"""Classify images, or extract features, with OverFeat and the release's weight files (the release tool's job).

  python -m overfeat_jax.classify --model=fast --weights=net_weight_0 cat.jpg dog.jpg          # top 5
  python -m overfeat_jax.classify --model=fast --weights=net_weight_0 --features --output=f.npy cat.jpg
  python -m overfeat_jax.classify --model=accurate --weights=net_weight_1 --multiscale cat.jpg

Top-N mode reproduces the release: smaller side resized to 231, central square, one 1x1 output, softmax.
Feature mode (`--features`, `--layer=L`) runs the whole unresized image densely and returns layer L (release
numbering) as (C, H, W) float32. `--multiscale` uses the paper's six scales, flips and offset pooling instead,
each scale resized from a `--view_size` square view (the one image path: docs/ARCHITECTURE.md).
Without `--weights` the network gets random N(0, 0.01) weights and a warning (to try the tool). Many images:
every usable one is classified, each unusable one (missing, not an image, a JPEG with more than 5 % of its rows
missing) is named on one stderr line, then the command exits 2. `--exif_transpose` turns images by their EXIF
orientation (off: the stored pixels). Feature files of several images are named by `overfeat_jax.output_names`.
Documentation: docs/classify.md. Why it is fast: docs/classify.md "Where the time goes".
"""

import time

_T0 = time.perf_counter()  # before the heavy imports, so that --timing can show what they cost

# pylint: disable=g-import-not-at-top,wrong-import-position
import dataclasses
import io
import json
import os
import sys
from typing import Any, Callable, Iterator, Sequence

from absl import flags, logging
import jax
import jax.numpy as jnp
import numpy as np

from overfeat_jax import cli
from overfeat_jax import output_names
from overfeat_jax import storage
from overfeat_jax.data import class_names as class_names_lib
from overfeat_jax.data import preprocess
from overfeat_jax.data.images import load_rgb
from overfeat_jax.errors import InputError
from overfeat_jax.output_names import distinct_stems
from overfeat_jax.inference import classify_views as views
from overfeat_jax.inference.multiscale import PAPER_SCALES, multiscale_class_scores
from overfeat_jax.models import geometry as geometry_lib
from overfeat_jax.models import build
from overfeat_jax.models import release_weights
from overfeat_jax.models.overfeat import OverFeat, layer_outputs

_T_IMPORTED = time.perf_counter()

_MODEL = flags.DEFINE_enum('model', 'fast', sorted(geometry_lib.GEOMETRIES), 'Network: fast (net_weight_0), '
                           'accurate (net_weight_1), or small (64-pixel networks trained here).')
_WEIGHTS = flags.DEFINE_string('weights', None, 'Weight file in the release layout. Absent: random weights.')
_TOP = flags.DEFINE_integer('top', 5, 'Number of best classes printed per image.', lower_bound=1)
_FEATURES = flags.DEFINE_bool('features', False, 'Feature mode: the default feature layer (fast 19 = fc7, '
                              'accurate 22 = fc8), densely on the whole image.')
_LAYER = flags.DEFINE_integer('layer', None, 'Feature mode with this layer (release numbering, 0 = input).')
_OUTPUT = flags.DEFINE_string('output', None, 'Feature mode: save (C, H, W) float32 to this .npy file; with '
                              'several images one file per image, FILE_<image stem>.npy.')
_MULTISCALE = flags.DEFINE_bool('multiscale', False, "The paper's procedure: six scales, flips, offset pooling, "
                                'spatial max, mean.')
_FLIPS = flags.DEFINE_bool('flips', True, 'Multiscale: also evaluate the horizontal mirror at each scale.')
_VIEW_SIZE = flags.DEFINE_integer('view_size', 0, 'Multiscale: the square each image is resized to before each '
                                  'scale is resized from it (a trained config\'s eval.resize gives its scores); '
                                  '0: the largest side of the scales (569).', lower_bound=0)
_DEVKIT = flags.DEFINE_string('devkit', None, 'ILSVRC2012 devkit folder or its meta.mat: print class names.')
_SYNSET_WORDS = flags.DEFINE_string('synset_words', None, 'Text file of class names in output (devkit) order.')
_JSON = flags.DEFINE_bool('json', False, 'One JSON object per image and line instead of text.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 8, 'Images per network call (same-size images only).',
                                   lower_bound=1)
_NUM_CLASSES = flags.DEFINE_integer('num_classes', 1000, 'Outputs of the last layer.', lower_bound=1)
_WIDTH_DIVISOR = flags.DEFINE_integer('width_divisor', 1, 'Network widths divided by this (for networks trained '
                                      'here at small widths and saved in the release layout).', lower_bound=1)
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the random weights used without --weights.')
_CACHE = flags.DEFINE_string('compilation_cache', None, 'Folder for JAX\'s persistent compilation cache.')
_TIMING = flags.DEFINE_bool('timing', False, 'Print where the time went (stderr).')
_EXIF = flags.DEFINE_bool('exif_transpose', False, 'Turn each image by its EXIF orientation tag first; off: the '
                          'stored pixels (as ILSVRC uses them).')


# --- timing -----------------------------------------------------------------------------------------------
class Timer:
  """Wall time per phase, in the order the phases first ran; `add` accumulates a phase across calls."""

  def __init__(self):
    self.phases: dict[str, float] = {}

  def add(self, name: str, seconds: float) -> None:
    self.phases[name] = self.phases.get(name, 0.0) + seconds

  def time(self, name: str, fn: Callable[..., Any], *args, **kwargs) -> Any:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    self.add(name, time.perf_counter() - start)
    return out


def _process_age() -> float | None:
  """Seconds since this process started (Linux /proc), so the breakdown includes interpreter start-up."""
  try:
    with open('/proc/self/stat') as f:
      start_ticks = int(f.read().rsplit(')', 1)[1].split()[19])
    with open('/proc/uptime') as f:
      uptime = float(f.read().split()[0])
    return uptime - start_ticks / os.sysconf('SC_CLK_TCK')
  except (OSError, ValueError, IndexError):
    return None


# --- the network ------------------------------------------------------------------------------------------
def load_params(path: str | None, geometry: geometry_lib.Geometry, num_classes: int, seed: int = 0) -> Any:
  """The network's parameters on the default device, in the Flax layout.

  A release file is memory-mapped, handed to the device in its own layout and transposed there by one jitted
  program (see `release_weights.read_release_arrays`). Without a file: random weights and a warning.
  """
  if path is None:
    logging.warning('no --weights given: using RANDOM weights (seed %d); the classes printed are meaningless. '
                    'Pass the release file (net_weight_0 for fast, net_weight_1 for accurate).', seed)
    return jax.device_put(release_weights.random_params(geometry, num_classes, seed))
  arrays = release_weights.read_release_arrays(path, geometry, num_classes)
  return jax.block_until_ready(jax.jit(release_weights.to_flax_layout)(jax.device_put(arrays)))


def make_network(model_name: str, num_classes: int, width_divisor: int = 1) -> OverFeat:
  return build.classifier(model_name, width_divisor, num_classes)  # the one builder (models.build)


def top_fn(model: OverFeat) -> Callable:
  """jitted (params, uint8 [B, S, S, 3]) -> softmax probabilities [B, C] of the single (1x1) output."""
  def probabilities(params, images):
    logits = model.apply({'params': params}, images)  # [B, 1, 1, C]
    return jax.nn.softmax(logits[:, 0, 0].astype(jnp.float32), axis=-1)
  return jax.jit(probabilities)


def layer_fn(model: OverFeat, layers: Sequence[str]) -> Callable:
  """jitted (params, uint8 [B, H, W, 3]) -> tuple of the named layers [B, h, w, C], densely (release `-f -L`)."""
  def outputs(params, images):
    found = layer_outputs(model, {'params': params}, images, layers)
    return tuple(found[name] for name in layers)
  return jax.jit(outputs)


def multiscale_fn(model: OverFeat, scales: Sequence[tuple[int, int]], flips: bool) -> Callable:
  """jitted (params, uint8 [B, V, V, 3] views) -> [B, C]: each scale resized from the view on the device, offset
  pooling, spatial max of softmax, mean over scales and flips (`inference.multiscale`, as the trainer evaluates)."""
  scales = tuple(tuple(int(v) for v in s) for s in scales)
  return jax.jit(lambda params, images: multiscale_class_scores(model, params, images, scales=scales, flips=flips,
                                                                fine=True))


def multiscale_view_size(scales: Sequence[tuple[int, int]]) -> int:
  """The default `--view_size`: the largest side among the scales (569 for the paper's), so that the device only
  keeps or shrinks the view (antialiased) and no scale is enlarged from a smaller view."""
  return max(max(int(h), int(w)) for h, w in scales)


@dataclasses.dataclass
class Runner:
  """Runs one jitted function over batches, compiling once per input shape (counted in the timer)."""
  fn: Callable
  params: Any
  timer: Timer
  compiled: dict = dataclasses.field(default_factory=dict)

  def __call__(self, images: np.ndarray) -> jax.Array:
    key = images.shape
    if key not in self.compiled:
      spec = jax.ShapeDtypeStruct(images.shape, images.dtype)
      self.compiled[key] = self.timer.time('compile', lambda: self.fn.lower(self.params, spec).compile())
    return self.compiled[key](self.params, images)  # asynchronous: returns before the network has finished


def run_batches(runner: Runner, batches: Iterator[views.Batch]) -> dict[int, Any]:
  """Dispatches every batch (the next one is prepared while the device computes), then collects the rows.

  A row is a NumPy array, or a tuple of them when the function returns a tuple (several layers).
  """
  pending = [(batch.indices, runner(batch.images)) for batch in batches]
  start = time.perf_counter()
  out = {}
  for indices, result in pending:
    if isinstance(result, tuple):
      arrays = [np.asarray(r) for r in result]
      out.update({index: tuple(a[row] for a in arrays) for row, index in enumerate(indices)})
    else:
      rows = np.asarray(result)
      out.update({index: rows[row] for row, index in enumerate(indices)})
  runner.timer.add('network (waiting for results)', time.perf_counter() - start)
  return out


@dataclasses.dataclass
class Reading:
  """How the images of one call are read, and which turned out unusable.

  `errors` None: an unusable image raises its `InputError`; a dict: it is recorded there (input index -> the
  one-sentence message), left out of the results, and the other images go on.
  """
  exif_transpose: bool = False
  errors: dict[int, str] | None = None


def _decoded(paths: Sequence[str], prepare: Callable[[np.ndarray, str], np.ndarray], timer: Timer,
             reading: Reading | None = None, first: int = 0) -> Iterator[tuple[int, np.ndarray]]:
  reading = reading or Reading()
  for index, path in enumerate(paths, start=first):
    start = time.perf_counter()
    try:
      image = prepare(load_rgb(path, exif_transpose=reading.exif_transpose), path)
    except InputError as e:
      if reading.errors is None:
        raise
      reading.errors[index] = str(e)
      continue
    finally:
      timer.add('decode + resize (host)', time.perf_counter() - start)
    yield index, image


def _stack(rows: dict[int, np.ndarray], width: int) -> np.ndarray:
  """The rows of the usable images in input order, [N_usable, width] (width: for the case of none)."""
  return np.stack([rows[i] for i in sorted(rows)]) if rows else np.zeros((0, width), np.float32)


def classify_top(model: OverFeat, params: Any, paths: Sequence[str], batch_size: int,
                 timer: Timer | None = None, reading: Reading | None = None) -> np.ndarray:
  """The release's classification of each usable image (all, unless `reading.errors` collects the unusable):
  probabilities [N, C] of the 231 central square's output, in input order."""
  timer = timer or Timer()
  size = views.view_size(model.geometry)
  items = _decoded(paths, lambda image, _: views.release_view(image, size), timer, reading)
  rows = run_batches(Runner(top_fn(model), params, timer), views.batches_by_size(items, batch_size))
  return _stack(rows, model.num_classes)


def check_layer(geometry: geometry_lib.Geometry, layer: int) -> None:
  """Raises `InputError` unless `layer` is an index of the release numbering of `geometry`."""
  names = geometry.layer_names()
  if not 0 <= layer < len(names):
    raise InputError(f'layer {layer} does not exist: the {geometry.name} network has layers 0..{len(names) - 1} '
                     f'({names[0]} .. {names[-1]})')


def extract_layers(model: OverFeat, params: Any, paths: Sequence[str], layers: Sequence[int], batch_size: int,
                   timer: Timer | None = None, reading: Reading | None = None) -> list[dict[int, np.ndarray]]:
  """Layers (release numbering) of each whole, unresized, usable image: per image {layer: (C, H, W) float32}."""
  timer = timer or Timer()
  names = model.geometry.layer_names()
  for layer in layers:
    check_layer(model.geometry, layer)

  def prepare(image, path):
    views.check_feature_size(image, model.geometry, path)
    return image

  items = _decoded(paths, prepare, timer, reading)
  runner = Runner(layer_fn(model, [names[layer] for layer in layers]), params, timer)
  rows = run_batches(runner, views.batches_by_size(items, batch_size))
  return [{layer: np.ascontiguousarray(rows[i][j].transpose(2, 0, 1), dtype=np.float32)
           for j, layer in enumerate(layers)} for i in sorted(rows)]


def extract_features(model: OverFeat, params: Any, paths: Sequence[str], layer: int, batch_size: int,
                     timer: Timer | None = None, reading: Reading | None = None) -> list[np.ndarray]:
  """Layer `layer` (release numbering) of each whole, unresized, usable image, as (C, H, W) float32 arrays."""
  return [out[layer] for out in extract_layers(model, params, paths, [layer], batch_size, timer, reading)]


def classify_multiscale(model: OverFeat, params: Any, paths: Sequence[str], batch_size: int,
                        scales: Sequence[tuple[int, int]] = PAPER_SCALES, flips: bool = True,
                        timer: Timer | None = None, reading: Reading | None = None,
                        view_size: int | None = None) -> np.ndarray:
  """The paper's classification: mean over scales (and flips) of the per-class spatial max of softmax.

  The one image path (docs/ARCHITECTURE.md): each image is resized to a `view_size` square on the host
  (`views.multiscale_view`; None: `multiscale_view_size(scales)`), then to each scale on the device, exactly as
  the trainer's evaluation, `sweep` and `predict` do with `eval.resize` as the view size.
  Returns [N, C] for the usable images, in input order."""
  timer = timer or Timer()
  size = view_size or multiscale_view_size(scales)
  items = _decoded(paths, lambda image, _: views.multiscale_view(image, size), timer, reading)
  rows = run_batches(Runner(multiscale_fn(model, scales, flips), params, timer),
                     views.batches_by_size(items, batch_size))
  return _stack(rows, model.num_classes)


# --- output -----------------------------------------------------------------------------------------------
def top_classes(scores: np.ndarray, n: int) -> list[tuple[int, float]]:
  """The n best (output index, score) pairs, best first (ties: lower index first)."""
  order = np.argsort(-scores, kind='stable')[:n]
  return [(int(i), float(scores[i])) for i in order]


def format_top(path: str, best: list[tuple[int, float]], names: list[str] | None, as_json: bool,
               header: bool) -> str:
  """Release-style lines `class_name probability` (index when no names), or one JSON object."""
  if as_json:
    top = [{'index': i, 'ilsvrc2012_id': i + 1, 'name': names[i] if names else None, 'probability': p}
           for i, p in best]
    return json.dumps({'image': path, 'top': top})
  lines = [f'{path}:'] if header else []
  lines += [f'{names[i] if names else i} {p:.6f}' for i, p in best]
  return '\n'.join(lines)


def feature_paths(output: str, paths: Sequence[str]) -> list[str]:
  """`FILE.npy` for one image; `FILE_<name>.npy` per image for several, names by `output_names.distinct_stems`
  (`a/x.png`, `b/x.png` -> `FILE_a_x.npy`, `FILE_b_x.npy`). Raises `InputError` for the same file twice."""
  root = output[:-4] if output.endswith('.npy') else output
  if len(paths) == 1:
    return [root + '.npy']
  return [f'{root}_{stem}.npy' for stem in distinct_stems(paths)]


def write_features(path: str, layer: int, name: str, features: np.ndarray, output: str | None,
                   as_json: bool) -> str:
  """Saves the (C, H, W) map (plain float32 .npy) and describes it, or prints it like the release (`C H W`, values)."""
  shape = list(features.shape)
  if output:
    npy = io.BytesIO()
    np.save(npy, features, allow_pickle=False)
    storage.write_atomic(output, npy.getvalue())  # a bad --output: one line naming it (InputError)
    if as_json:
      return json.dumps({'image': path, 'layer': layer, 'layer_name': name, 'shape': shape, 'file': output})
    return f'{path}: layer {layer} ({name}) {shape[0]}x{shape[1]}x{shape[2]} -> {output}'
  if as_json:
    return json.dumps({'image': path, 'layer': layer, 'layer_name': name, 'shape': shape,
                       'values': features.ravel().tolist()})
  return f'{shape[0]} {shape[1]} {shape[2]}\n' + ' '.join(f'{v:.6g}' for v in features.ravel())


# --- the command ------------------------------------------------------------------------------------------
def _check_inputs(paths: Sequence[str]) -> None:
  """Flag combinations, the weight file's size and distinct feature files: checked before any slow work starts
  (each image is read later; an unusable one is reported and skipped, `Reading`)."""
  if not paths:
    raise InputError('give at least one image file')
  geometry = geometry_lib.get_geometry(_MODEL.value, _WIDTH_DIVISOR.value)
  if _LAYER.value is not None:
    check_layer(geometry, _LAYER.value)
  if _WEIGHTS.value is not None:
    release_weights.check_file_size(_WEIGHTS.value, geometry, _NUM_CLASSES.value)
  feature_mode = _FEATURES.value or _LAYER.value is not None
  if feature_mode and _MULTISCALE.value:
    raise InputError('--multiscale classifies; it cannot be combined with --features/--layer')
  if _OUTPUT.value and not feature_mode:
    raise InputError('--output saves features: use it with --features or --layer')
  if _VIEW_SIZE.value:
    preprocess.check_view_size(_VIEW_SIZE.value, '--view_size')
  if _TOP.value > _NUM_CLASSES.value and not feature_mode:
    print(f'note: --top={_TOP.value} is more than the network\'s {_NUM_CLASSES.value} classes: printing all '
          f'{_NUM_CLASSES.value}', file=sys.stderr)
  if _OUTPUT.value and (storage.path(_OUTPUT.value).is_dir() or _OUTPUT.value.endswith('/')):
    example = os.path.join(_OUTPUT.value, 'features.npy')
    raise InputError(f'--output={_OUTPUT.value} is a folder; --output names the file, e.g. {example} '
                     '(several images: features_<name>.npy beside it)')
  if _OUTPUT.value:
    for output in feature_paths(_OUTPUT.value, paths):  # the same image twice: refused before any work
      storage.check_output(output)  # so is a folder that is missing or read-only


def _run(paths: Sequence[str], timer: Timer, reading: Reading) -> list[str]:
  """Loads the network, runs the chosen mode and returns the output lines of the usable images."""
  model = timer.time('build model', make_network, _MODEL.value, _NUM_CLASSES.value, _WIDTH_DIVISOR.value)
  names = timer.time('class names', class_names_lib.class_names, devkit=_DEVKIT.value,
                     synset_words=_SYNSET_WORDS.value, num_classes=_NUM_CLASSES.value)
  params = timer.time('weights (read, to device, layout)', load_params, _WEIGHTS.value, model.geometry,
                      _NUM_CLASSES.value, _SEED.value)
  if _FEATURES.value or _LAYER.value is not None:
    layer_names = model.geometry.layer_names()
    default = layer_names.index(model.geometry.fc_names()[-2])  # the last hidden fc layer: fast 19, accurate 22
    layer = _LAYER.value if _LAYER.value is not None else default
    outputs = feature_paths(_OUTPUT.value, paths) if _OUTPUT.value else [None] * len(paths)
    features = extract_features(model, params, paths, layer, _BATCH_SIZE.value, timer, reading)
    features = _finite_only(paths, features, reading, 'features')
    usable = [i for i in range(len(paths)) if i not in reading.errors]
    start = time.perf_counter()
    replaced = output_names.existing([outputs[i] for i in usable])
    lines = [write_features(paths[i], layer, layer_names[layer], f, outputs[i], _JSON.value)
             for i, f in zip(usable, features)]
    output_names.note_replaced(replaced)
    timer.add('output', time.perf_counter() - start)
    return lines
  if _MULTISCALE.value:
    scores = classify_multiscale(model, params, paths, _BATCH_SIZE.value, PAPER_SCALES, _FLIPS.value, timer,
                                 reading, view_size=_VIEW_SIZE.value or None)
  else:
    scores = classify_top(model, params, paths, _BATCH_SIZE.value, timer, reading)
  scores = _finite_only(paths, scores, reading, 'class probabilities')
  usable = [p for i, p in enumerate(paths) if i not in reading.errors]
  start = time.perf_counter()
  lines = [format_top(p, top_classes(s, _TOP.value), names, _JSON.value, header=len(paths) > 1)
           for p, s in zip(usable, scores)]
  timer.add('output', time.perf_counter() - start)
  return lines


def _finite_only(paths: Sequence[str], outputs: Sequence[np.ndarray], reading: Reading,
                 what: str) -> list[np.ndarray]:
  """`outputs` (one per usable image, in order) without those holding NaN or inf, each recorded in
  `reading.errors` instead: printed as `nan` (or, with --json, as a bare NaN, which is not JSON) they read as a
  result (field case: a weights file of NaNs exited 0)."""
  usable = [i for i in range(len(paths)) if i not in reading.errors]
  kept = []
  for index, output in zip(usable, outputs):
    if np.isfinite(output).all():
      kept.append(output)
    else:
      reading.errors[index] = (f'the network\'s {what} for {paths[index]} are not finite numbers (NaN or inf): '
                               'the weights hold non-finite values, or the activations overflow')
  return kept


def _print_timing(timer: Timer) -> None:
  """The breakdown on stderr: start-up, imports, each phase, what no phase accounts for, and the total."""
  age, now = _process_age(), time.perf_counter()
  total = age if age is not None else now - _T0
  rows = [('python start-up (before imports)', age - (now - _T0))] if age is not None else []
  rows += [('imports (jax, flax, numpy, Pillow)', _T_IMPORTED - _T0)] + list(timer.phases.items())
  rows.append(('other (flags, dispatch, unaccounted)', total - sum(seconds for _, seconds in rows)))
  for name, seconds in rows + [('total', total)]:
    print(f'timing: {name:<38} {seconds:8.3f} s', file=sys.stderr)


def main(argv: Sequence[str]) -> None:
  paths = list(argv[1:])
  _check_inputs(paths)
  if _CACHE.value:
    jax.config.update('jax_compilation_cache_dir', _CACHE.value)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  timer = Timer()
  reading = Reading(exif_transpose=_EXIF.value, errors={})
  lines = _run(paths, timer, reading)
  for index in sorted(reading.errors):
    cli.print_error(reading.errors[index])
  if lines:
    print('\n'.join(lines), flush=True)
  if _TIMING.value:
    _print_timing(timer)
  if reading.errors:
    raise SystemExit(2)  # after every usable image: each unusable one was named above


if __name__ == '__main__':
  cli.run(main)
