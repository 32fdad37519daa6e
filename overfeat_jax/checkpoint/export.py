"""Self-contained, versioned artifacts of trained networks: what other JAX projects load (no training code).

Why a separate format from the training checkpoints: a training checkpoint holds the optimizer state, the
input pipeline position and no description of the network (the config that built it lives elsewhere), and
reading it needs orbax. An artifact is a directory of two files that need only numpy (or flax, or PyTorch)
and the safetensors package to use:

  config.json         {"format": "overfeat_jax.pretrained", "format_version": 2, "network": {...},
                       "regressor": ..., "stage", "class_names", "preprocessing", "source",
                       "params": {"file", "sha256", "count"}}
  params.safetensors  every parameter as a float32 tensor named by its tree path ('features/conv1/kernel',
                      ...; `flax.traverse_util.flatten_dict(params, sep='/')`), read with
                      `safetensors.numpy.load_file` / `safetensors.flax.load_file` / `safetensors.torch.load_file`:
                      a JSON header and raw little-endian bytes, so loading executes no code.

The same parameters and config always give the same bytes (`params_bytes`: the header's metadata keys sorted;
no time stamps anywhere), so an artifact's SHA-256 identifies what was exported: sweeps key finished points on it.

Format version 1 (written before safetensors) stored the same names in `params.npz`; it is still read
(`np.load(..., allow_pickle=False)`), so old exports keep loading.

The artifact is written into a temporary sibling directory and renamed into place (on an object store:
config.json, which holds the params' checksum, is deleted first and uploaded last), so a reader never sees a
half-written one. `read_artifact` checks the format name, the version, the parameter file's SHA-256 and every
array's shape against the network the config describes, and raises `InputError` (one sentence) on any mismatch.

The artifact and the checkpoints it is exported from may be local or remote (gs://; `overfeat_jax.storage`).

This module imports only numpy, jax, flax, safetensors, etils.epath, `overfeat_jax.models` and
`overfeat_jax.settings` (no optax, no orbax, no TensorFlow). The modules are built by `models.build`, as the
tasks build theirs; the stage names and which stage has a background class come from `overfeat_jax.settings`.
"""

import dataclasses
import hashlib
import io
import json
import os
import zipfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import safetensors
import safetensors.numpy
from flax import traverse_util

from overfeat_jax import output_names
from overfeat_jax import storage
from overfeat_jax.data import class_names as class_names_lib
from overfeat_jax.config_files import read_json
from overfeat_jax.errors import InputError
from overfeat_jax.models import build
from overfeat_jax.models.geometry import GEOMETRIES, Geometry, get_geometry
from overfeat_jax.models.heads import BoxRegressor
from overfeat_jax.models.overfeat import OverFeat
from overfeat_jax.settings import TASK_NAMES, WITH_BACKGROUND, StageSettings

FORMAT_NAME = 'overfeat_jax.pretrained'
FORMAT_VERSION = 2  # 2: params.safetensors; 1: params.npz (still read)
READ_VERSIONS = (1, 2)
CONFIG_FILE, PARAMS_FILE, LEGACY_PARAMS_FILE = 'config.json', 'params.safetensors', 'params.npz'
STAGES = TASK_NAMES


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
  """What builds the modules of a trained network (everything else in the artifact is description).

  Attributes:
    geometry: registered geometry name ('fast', 'accurate', 'small').
    width_divisor: every width divided by this (1 = the paper's widths).
    num_classes: classifier outputs (detection: object classes + 1, the background being the last).
    dtype: compute dtype of the modules ('float32' or 'bfloat16'); parameters are float32 either way.
    regressor_outputs: box regressor outputs (1 single-class, C per-class), 0 when there is no regressor.
    regressor_hidden: the regressor's hidden widths.
  """
  geometry: str
  width_divisor: int
  num_classes: int
  dtype: str = 'float32'
  regressor_outputs: int = 0
  regressor_hidden: tuple[int, ...] = ()

  def classifier(self) -> OverFeat:
    """The classifier (InputError for a geometry or dtype this version does not know)."""
    if self.geometry not in GEOMETRIES or self.dtype not in build.DTYPES:
      raise InputError(f'unknown network {self.geometry!r} or dtype {self.dtype!r} in the artifact config.')
    return build.classifier(self.geometry, self.width_divisor, self.num_classes, dtype=self.dtype)

  def regressor(self) -> BoxRegressor | None:
    """The box regressor, or None for a classification network."""
    if not self.regressor_outputs:
      return None
    return build.regressor(self.geometry, self.width_divisor, self.regressor_outputs, self.regressor_hidden,
                           dtype=self.dtype)


def abstract_params(spec: NetworkSpec) -> dict[str, Any]:
  """Shapes of the params the spec's modules expect: {'backbone': ..., 'regressor': ...} or the classifier's."""
  model = spec.classifier()
  size = model.geometry.input_size
  images = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
  backbone = jax.eval_shape(lambda x: model.init(jax.random.key(0), x)['params'], images)
  regressor = spec.regressor()
  if regressor is None:
    return backbone
  k, c5 = model.geometry.fc_kernel, model.geometry.layer5_channels
  pooled = jax.ShapeDtypeStruct((1, k, k, c5), jnp.float32)
  head = jax.eval_shape(lambda x: regressor.init(jax.random.key(0), x)['params'], pooled)
  return {'backbone': backbone, 'regressor': head}


def _shape(tree: Any, *path: str) -> tuple[int, ...]:
  for key in path:
    tree = tree[key]
  return tuple(np.shape(tree))


def infer_network(params: Any, dtype: str = 'float32') -> NetworkSpec:
  """The network a parameter tree belongs to, from its shapes alone (training checkpoints store no config).

  Accepts a classifier tree {'features', 'classifier'} or a localization/detection tree {'backbone',
  'regressor'}. Every registered geometry and width divisor whose first layer matches is built abstractly and
  compared leaf by leaf; exactly one must match.
  """
  try:
    backbone = params['backbone'] if 'backbone' in params else params
    conv1 = _shape(backbone, 'features', 'conv1', 'kernel')
    fcs = sorted(backbone['classifier'], key=lambda n: int(n[2:]))
    num_classes = _shape(backbone, 'classifier', fcs[-1], 'bias')[0]
    reg = params.get('regressor') if 'backbone' in params else None
    reg_names = sorted(reg, key=lambda n: int(n[3:])) if reg else []
    reg_hidden = tuple(_shape(reg, n, 'bias')[0] for n in reg_names[:-1])
    reg_outputs = _shape(reg, reg_names[-1], 'bias')[0] // 4 if reg else 0
  except (KeyError, TypeError, IndexError, ValueError, AttributeError):
    raise InputError('the parameters are not an OverFeat tree ({features, classifier} or {backbone, '
                     'regressor}).') from None
  want = jax.tree.map(np.shape, params)
  for name, base in GEOMETRIES.items():
    if base.stages[0].kernel != conv1[0] or conv1[-1] < 1 or base.stages[0].features % conv1[-1]:
      continue
    spec = NetworkSpec(name, base.stages[0].features // conv1[-1], int(num_classes), dtype, int(reg_outputs),
                       reg_hidden)
    got = jax.tree.map(lambda s: tuple(s.shape), abstract_params(spec))
    if got == want:
      return spec
  raise InputError(f'no registered network ({sorted(GEOMETRIES)} at any width) has these parameter shapes.')


def flatten(params: Any) -> dict[str, np.ndarray]:
  """{'features/conv1/kernel': contiguous float32 array, ...}: the tree as named tensors (the file's keys)."""
  return {name: np.ascontiguousarray(jax.device_get(leaf), dtype=np.float32)
          for name, leaf in traverse_util.flatten_dict(params, sep='/').items()}


def build_config(spec: NetworkSpec, *, stage: str, class_names: list[str] | None = None,
                 preprocessing: dict | None = None, source: dict | None = None) -> dict[str, Any]:
  """The config.json content (without the params entry, which `write_artifact` adds)."""
  if stage not in STAGES:
    raise InputError(f'stage must be one of {STAGES}, got {stage!r}.')
  background = stage in WITH_BACKGROUND  # the classifier's last output is the background class
  object_classes = spec.num_classes - 1 if background else spec.num_classes
  if class_names is not None and len(class_names) != object_classes:
    raise InputError(f'{len(class_names)} class names for a network with {object_classes} object classes.')
  geometry = get_geometry(spec.geometry, spec.width_divisor)
  network = {'geometry': spec.geometry, 'width_divisor': spec.width_divisor, 'num_classes': spec.num_classes,
             'dtype': spec.dtype, 'input_size': geometry.input_size, 'coarse_stride': geometry.coarse_stride,
             'fine_stride': geometry.fine_stride,
             'background_class': spec.num_classes - 1 if background else None}
  regressor = ({'num_outputs': spec.regressor_outputs, 'hidden': list(spec.regressor_hidden),
                'encoding': 'window-relative box edges (overfeat_jax.box_ops.encode)'}
               if spec.regressor_outputs else None)
  pre = {'input': 'RGB, NHWC, pixel values 0..255 (uint8 or float); the model normalises inside',
         'train_size': geometry.input_size, **(preprocessing or {})}
  return {'format': FORMAT_NAME, 'format_version': FORMAT_VERSION, 'stage': stage, 'network': network,
          'regressor': regressor, 'class_names': class_names, 'preprocessing': pre, 'source': source or {}}


def params_bytes(flat: dict[str, np.ndarray]) -> bytes:
  """params.safetensors' content, the same bytes for the same arrays in every process.

  Why: safetensors keeps the metadata in a Rust HashMap, whose order changes from process to process (and from
  one save to the next), so the same parameters had several SHA-256s. The file is safetensors' own; only its
  JSON header is written again with the metadata keys sorted (the tensors keep safetensors' order and offsets).
  """
  data = safetensors.numpy.save(flat, metadata={'format': FORMAT_NAME, 'format_version': str(FORMAT_VERSION)})
  size = int.from_bytes(data[:8], 'little')
  header = json.loads(data[8:8 + size])
  header['__metadata__'] = dict(sorted(header['__metadata__'].items()))
  text = json.dumps(header, separators=(',', ':')).encode('utf-8')
  text += b' ' * (-len(text) % 8)  # safetensors' padding: the arrays start 8-byte aligned
  return len(text).to_bytes(8, 'little') + text + data[8 + size:]


def write_artifact(path: str, params: Any, config: dict[str, Any]) -> str:
  """Writes params + config as an artifact directory at `path` (local or gs://), atomically
  (`storage.atomic_dir`: one rename locally; remotely config.json, which holds the params' SHA-256, is removed
  first and uploaded last). Returns the absolute path or the URL.

  An existing artifact at `path` is replaced; any other existing file or directory is refused.
  """
  path = storage.url(path)
  if storage.path(path).exists() and not is_artifact(path):  # e.g. a training workdir (it has a config.json)
    raise InputError(f'{path} exists and is not an overfeat_jax artifact; choose a new --output.')
  flat = flatten(params)
  data = params_bytes(flat)
  config = {**config, 'params': {'file': PARAMS_FILE, 'sha256': hashlib.sha256(data).hexdigest(),
                                 'count': int(sum(v.size for v in flat.values()))}}
  with storage.atomic_dir(path, commit_file=CONFIG_FILE) as stage:
    (stage / PARAMS_FILE).write_bytes(data)
    (stage / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
  return path


def is_artifact(path: str) -> bool:
  """Whether `path` is an artifact directory rather than a training workdir, which also holds a config.json
  (the training config, `config_files.save_config`) but whose config has no artifact `format`. An unreadable
  config.json counts as an artifact, so `read_config` reports it."""
  file = storage.path(path) / CONFIG_FILE
  if not file.is_file():
    return False
  try:
    config = read_json(file, 'config')
  except InputError:
    return True
  return not (isinstance(config, dict) and 'format' not in config and 'stages' in config)


def read_config(path: str) -> dict[str, Any]:
  """The artifact's config.json, after checking the format name and version."""
  file = storage.path(path) / CONFIG_FILE
  if not file.is_file():  # asked only now: the happy path costs one remote call, not two
    if not storage.path(path).exists():
      raise InputError(f'{path} does not exist.')
    raise InputError(f'{path} is not an overfeat_jax artifact (no {CONFIG_FILE}).')
  config = read_json(file, 'artifact config (the artifact is corrupt)')
  if not isinstance(config, dict) or config.get('format') != FORMAT_NAME:
    raise InputError(f'{file} is not an overfeat_jax artifact config (format is not {FORMAT_NAME!r}).')
  version = config.get('format_version')
  if version not in READ_VERSIONS:
    raise InputError(f'{path} has artifact format version {version!r}; this overfeat_jax reads versions '
                     f'{READ_VERSIONS} (export it again, or use a matching overfeat_jax).')
  return config


def spec_of(config: dict[str, Any]) -> NetworkSpec:
  try:
    net, reg = config['network'], config.get('regressor') or {}
    return NetworkSpec(str(net['geometry']), int(net['width_divisor']), int(net['num_classes']),
                       str(net.get('dtype', 'float32')), int(reg.get('num_outputs', 0)),
                       tuple(int(h) for h in reg.get('hidden', ())))
  except (KeyError, TypeError, ValueError) as e:
    raise InputError(f'the artifact config has no valid network description ({e}).') from None


def _load_arrays(path: str, config: dict[str, Any]) -> dict[str, np.ndarray]:
  """The named arrays of a checked artifact: params.safetensors (version 2) or params.npz (version 1)."""
  entry = config.get('params') or {}
  legacy = config['format_version'] == 1
  file = storage.path(path) / (LEGACY_PARAMS_FILE if legacy else PARAMS_FILE)  # never a path from the JSON
  if not file.is_file():
    raise InputError(f'{file} is missing; the artifact is incomplete.')
  raw = file.read_bytes()  # one read (local or gs://): checksummed, then parsed from memory
  if hashlib.sha256(raw).hexdigest() != entry.get('sha256'):
    raise InputError(f'{file} does not match the checksum in {CONFIG_FILE}; the artifact is corrupt.')
  try:
    if not legacy:
      return safetensors.numpy.load(raw)
    with np.load(io.BytesIO(raw), allow_pickle=False) as data:
      return {name: data[name] for name in data.files}
  except (safetensors.SafetensorError, zipfile.BadZipFile, ValueError, OSError) as e:
    raise InputError(f'{file} cannot be read ({e}); the artifact is corrupt.') from None


def read_artifact(path: str) -> tuple[dict[str, Any], NetworkSpec, dict[str, Any]]:
  """(config, network spec, params as numpy arrays) of an artifact directory, every shape checked."""
  config = read_config(path)
  spec = spec_of(config)
  arrays = _load_arrays(path, config)
  try:
    params = traverse_util.unflatten_dict(arrays, sep='/')
  except (ValueError, TypeError, KeyError, AttributeError):  # a name that is both a leaf and a scope
    params = None
  want = jax.tree.map(lambda s: tuple(s.shape), abstract_params(spec))
  if params is None or jax.tree.map(np.shape, params) != want:
    raise InputError(f'{path}: the parameters do not match the network in {CONFIG_FILE}; the artifact is '
                     'corrupt or was edited.')
  return config, spec, params


def _steps(directory: str) -> list[int]:
  """The step numbers of the checkpoints in `directory` (local or gs://), ascending; [] if it has none."""
  folder = storage.path(directory)
  return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


def checkpoint_dir(workdir: str, stage: str) -> str:
  """The orbax checkpoint directory of `stage` in a training workdir (or of a stage directory itself)."""
  for candidate in (os.path.join(workdir, stage, 'checkpoints'), os.path.join(workdir, 'checkpoints'), workdir):
    if _steps(candidate):
      return candidate
  raise InputError(f'no {stage} checkpoint in {workdir} (looked for {os.path.join(workdir, stage, "checkpoints")}'
                   '/<step>); train it first or pass the right --workdir/--stage.')


def stage_folder_of(workdir: str) -> tuple[str, str] | None:
  """(training workdir, stage) when `workdir` is a stage folder of a training run (`<workdir>/<stage>`, holding
  checkpoints/<step>) or that folder's `checkpoints`; None for anything else (a training workdir holds
  `<stage>/checkpoints`, never `checkpoints` itself).

  Why: `checkpoint_dir` finds the checkpoints of a stage folder too, but the training config (`config.json`:
  the class names, the preprocessing) is in the workdir above it, so the export command refuses a stage folder
  and names the workdir (`overfeat_jax/export.py`).
  """
  folder = storage.url(workdir).rstrip('/')
  checkpoints = folder if os.path.basename(folder) == 'checkpoints' else os.path.join(folder, 'checkpoints')
  parent, stage = os.path.split(os.path.dirname(checkpoints))
  return (parent, stage) if stage in STAGES and _steps(checkpoints) else None


def load_trained(workdir: str, stage: str, step: int | None = None) -> tuple[int, Any]:
  """(step, params as numpy) of a training run's checkpoint of `stage`: the latest, or `step`.

  Imports orbax (through the checkpoint manager) only here, so reading artifacts never needs it.
  """
  from overfeat_jax.checkpoint import manager  # pylint: disable=g-import-not-at-top
  directory = checkpoint_dir(workdir, stage)
  steps = _steps(directory)
  if step is not None and step not in steps:
    raise InputError(f'{directory} has no checkpoint at step {step}; it has steps {steps}.')
  try:
    step, params = manager.restore_params(directory, step)
  except InputError:
    raise
  except Exception as e:  # pylint: disable=broad-except  (orbax/tensorstore raise many types)
    raise InputError(f'checkpoint {directory}/{step if step is not None else max(steps)} cannot be restored '
                     f'({type(e).__name__}: {str(e)[:160]}).') from None
  return step, jax.tree.map(lambda x: np.asarray(jax.device_get(x)), params)


# --- the export command's work (kept here so that it runs without the command's absl flags) ---

def read_names(path: str) -> list[str]:
  with open(path, encoding='utf-8') as f:
    names = [line.strip() for line in f if line.strip()]
  if not names:
    raise InputError(f'class names file {path} is empty.')
  return names


def _lists(value: Any) -> Any:
  """Tuples (nested) as JSON lists."""
  return [_lists(v) for v in value] if isinstance(value, (tuple, list)) else value


def config_details(settings: StageSettings, spec: NetworkSpec) -> tuple[Any, list[str] | None, dict]:
  """(spec with the stage's dtype, class names if the dataset has them, preprocessing) from the exported
  stage's settings (`config_files.settings_from_config`); InputError when they describe another network."""
  model = settings.model
  if (model.geometry, model.width_divisor) != (spec.geometry, spec.width_divisor):
    raise InputError(f'--config describes {model.geometry}/{model.width_divisor} but the checkpoint holds '
                     f'{spec.geometry}/{spec.width_divisor}.')
  spec = dataclasses.replace(spec, dtype=model.dtype)
  names = class_names_lib.dataset_class_names(settings.dataset, settings.data_dir, settings.num_classes)
  e = settings.eval
  pre = {'dataset': settings.dataset, 'crop_size': settings.crop_size, 'eval_resize': e.resize,
         'eval_scales': _lists(e.scales), 'eval_flips': e.flips, 'eval_fine_stride': e.fine}
  if settings.box is not None:
    pre['box'] = {k: _lists(v) for k, v in dataclasses.asdict(settings.box).items()}
  return spec, names, pre


def export_workdir(workdir: str, stage: str, output: str, fmt: str, step: int | None,
                   settings: StageSettings | None = None, class_names_file: str | None = None) -> str:
  """Reads the checkpoint, writes the artifact or release file; returns a one-line summary. `settings` (the
  stage's, from the training config) adds the class names, the preprocessing and the compute dtype."""
  step, params = load_trained(workdir, stage, step)
  spec = infer_network(params)
  names, pre = None, {}
  if settings is not None:
    spec, names, pre = config_details(settings, spec)
  if class_names_file:
    names = read_names(class_names_file)
  if fmt == 'release':
    return export_release(params, spec, output)
  cfg = build_config(spec, stage=stage, class_names=names, preprocessing=pre,
                     source={'workdir': storage.url(workdir), 'stage': stage, 'step': step})
  replaced = is_artifact(output)  # anything else that exists is refused by write_artifact
  path = write_artifact(output, params, cfg)
  output_names.note_replaced([path] if replaced else [])
  return f'wrote {path}: {spec.geometry}/{spec.width_divisor} {stage}, {spec.num_classes} outputs, step {step}'


def release_geometry(spec: NetworkSpec) -> Geometry:
  """The geometry of a network the release format can hold (fast or accurate, full width, 1000 classes);
  InputError for any other."""
  from overfeat_jax.models import release_weights  # pylint: disable=g-import-not-at-top
  if spec.geometry not in release_weights.RELEASE_FILES or spec.width_divisor != 1 or \
      spec.num_classes != release_weights.RELEASE_CLASSES:
    raise InputError(f'--format=release needs the fast or accurate network at full width with 1000 classes; '
                     f'this checkpoint is {spec.geometry}/{spec.width_divisor} with {spec.num_classes} outputs '
                     '(use --format=artifact).')
  return spec.classifier().geometry


def _file_size(p: str) -> int | None:
  """Bytes of the regular file `p` (local or remote), None when it is not one (a directory)."""
  target = storage.path(p)
  if not target.is_file():
    return None
  stat = target.stat()
  return stat.st_size if hasattr(stat, 'st_size') else stat.length  # pathlib's os.stat_result; epath's StatResult


def export_release(params: Any, spec: NetworkSpec, output: str) -> str:
  """Writes the release-layout weight file of a release network (`release_geometry`). An existing `output` is
  replaced only when it has exactly this network's release layout size (an earlier export: said on stderr,
  `output_names.note_replaced`); any other existing file or directory is refused and left as it was."""
  from overfeat_jax.models import release_weights  # pylint: disable=g-import-not-at-top
  geometry = release_geometry(spec)
  path = storage.url(output)
  replaced = storage.path(path).exists()
  if replaced:
    size, expected = _file_size(path), release_weights.expected_bytes(geometry, spec.num_classes)
    if size != expected:
      found = f'{size:,} bytes' if size is not None else 'a directory' if storage.path(path).is_dir() else 'not a file'
      raise InputError(f'{path} exists and is not a release weight file ({found}; the {spec.geometry} release '
                       f'layout has {expected:,} bytes); choose a new --output, or delete it first.')
  backbone = params['backbone'] if 'backbone' in params else params
  with storage.staged_file(output) as local:  # gs://: written locally, uploaded as one object
    size = release_weights.save_release_weights(backbone, geometry, local)
  output_names.note_replaced([path] if replaced else [])
  return f'wrote {path}: {size} bytes, the {spec.geometry} release layout'
