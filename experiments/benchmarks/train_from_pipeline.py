r"""Training fed by the real input pipeline from JPEG files: img/s, and does the accelerator wait for data?

It writes `--num_images` photo-like JPEGs in ImageNet's extracted (Kaggle) layout, builds them with the
project's own ILSVRC2012 CLS-LOC builder (`data.build`, config `original`: the JPEG bytes are stored as they
are), and trains with what `main` uses: `pipeline.train_iterator` (grain: decode fused with the random crop,
flip, boxes; each of `--worker_counts` grain worker processes, 'auto' = the trainer's rule) ->
`pipeline.Prefetcher` with `to_global` in a background thread -> the trainer's jitted, donated
`jit_train_step` (classification loss, SGD momentum).

Measurements of the same step, on the same machine, one after another:
  compute only:  the step on one device-resident batch (the most the accelerator can take);
  then for each worker count:
  input only:    the iterator alone (host img/s: the most the pipeline can feed; per CPU-second of this
                 process and its workers);
  end to end:    the pipeline feeding the step. `data wait` is the share of the wall time the loop spent
                 blocked in `next(batches)` (the device, fed asynchronously, has nothing queued then), and
                 `device busy` = steps x compute-only step time / wall time.
The last line is `input pipeline: N img/s per CPU-second (workers W: M img/s wall)` for the last worker count.

  python experiments/benchmarks/train_from_pipeline.py --geometry=fast --batch=256 --worker_counts=0,auto \
      --num_images=4096 --image_size=341x256 --workdir=/tmp/overfeat_pipeline_bench
  # The CPU demo network (small/8, batch 64, 64-px crops of 72-px JPEGs), 0, 1 and 2 workers:
  JAX_PLATFORMS=cpu python experiments/benchmarks/train_from_pipeline.py --geometry=small --width_divisor=8 \
      --dtype=float32 --batch=64 --num_images=2048 --image_size=72x72 --resize_smaller=72 --steps=30 \
      --worker_counts=0,1,2
"""

import importlib.util
import io
import os
import shutil
import time

from absl import flags
import jax
import numpy as np

from PIL import Image

from overfeat_jax import cli
from overfeat_jax.data import build as build_lib
from overfeat_jax.data import pipeline
from overfeat_jax.data.imagenet_cls_loc import sorted_wnids
from overfeat_jax.errors import InputError
from overfeat_jax.models import get_geometry
from overfeat_jax.parallel import mesh as mesh_lib
from overfeat_jax.config_files import settings_from_config
from overfeat_jax.tasks import classification
from overfeat_jax.train import loop
from overfeat_jax.train import state as state_lib
from overfeat_jax.train import step as step_lib

import cpu_time

_WORKDIR = flags.DEFINE_string('workdir', '/tmp/overfeat_pipeline_bench', 'JPEGs and the tfds build go here.')
_NUM_IMAGES = flags.DEFINE_integer('num_images', 2048, 'Distinct JPEGs written (the epoch repeats).')
_NUM_SYNSETS = flags.DEFINE_integer('num_synsets', 10, 'Class folders they are spread over.')
_IMAGE_SIZE = flags.DEFINE_string('image_size', '500x375', 'WxH of the JPEGs (ImageNet median ~500x375).')
_GEOMETRY = flags.DEFINE_string('geometry', 'fast', 'fast | accurate | small.')
_DIVISOR = flags.DEFINE_integer('width_divisor', 1, 'Width divisor of the network.')
_DTYPE = flags.DEFINE_enum('dtype', 'bfloat16', ['bfloat16', 'float32'], 'Compute dtype.')
_BATCH = flags.DEFINE_integer('batch', 256, 'Global batch size.')
_RESIZE = flags.DEFINE_integer('resize_smaller', 256, 'Smaller side before the random crop (paper: 256).')
_STEPS = flags.DEFINE_integer('steps', 50, 'Timed steps per measurement (after `--warmup`).')
_WARMUP = flags.DEFINE_integer('warmup', 3, 'Untimed steps first (compilation, pipeline start).')
_WORKERS = flags.DEFINE_list('worker_counts', ['0'], "grain worker processes to compare (0: in this process; "
                             "'auto': the trainer's rule, pipeline.resolve_worker_count).")
_THREADS = flags.DEFINE_integer('read_threads', 0, 'grain read threads.')
_PREFETCH = flags.DEFINE_integer('prefetch', 2, 'Global batches kept ready on the device by the Prefetcher.')
_KEEP = flags.DEFINE_bool('keep', True, 'Reuse the JPEGs and the build in --workdir when present.')


def photo_like(rng: np.random.Generator, height: int, width: int) -> bytes:
  """A JPEG (quality 90) mixing smooth regions and detail like a photo, so it decodes as slowly as ImageNet's.

  Noise at three scales, each bicubically enlarged to the full size, plus fine grain: ~70-90 KB at 500x375.
  """
  image = rng.normal(0.0, 5.0, (height, width, 3))
  for cells, amplitude in ((6, 70.0), (30, 35.0), (120, 18.0)):
    noise = rng.normal(128.0, amplitude, (cells, max(cells * width // height, 1), 3))
    small = np.uint8(np.clip(noise, 0, 255))
    image += np.asarray(Image.fromarray(small).resize((width, height), Image.BICUBIC), np.float64) - 128.0
  buffer = io.BytesIO()
  Image.fromarray(np.uint8(np.clip(image + 128.0, 0, 255))).save(buffer, format='JPEG', quality=90)
  return buffer.getvalue()


def write_jpegs(root: str, count: int, synsets: list[str], width: int, height: int) -> None:
  """`count` photo-like JPEGs under ILSVRC/Data/CLS-LOC/train/<wnid>/, plus LOC_synset_mapping.txt."""
  rng = np.random.default_rng(0)
  for i in range(count):
    wnid = synsets[i % len(synsets)]
    folder = os.path.join(root, 'ILSVRC', 'Data', 'CLS-LOC', 'train', wnid)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f'{wnid}_{i}.JPEG'), 'wb') as f:
      f.write(photo_like(rng, height, width))
  with open(os.path.join(root, 'LOC_synset_mapping.txt'), 'w') as f:
    f.writelines(f'{w} synthetic class {w}\n' for w in synsets)


def prepare_source(workdir: str):
  """(tfds source of the built train split, seconds to write the JPEGs, seconds to build)."""
  try:
    width, height = (int(v) for v in _IMAGE_SIZE.value.lower().split('x'))
  except ValueError:
    raise InputError(f'--image_size must be WxH, e.g. 500x375, got {_IMAGE_SIZE.value!r}') from None
  tag = f'{_NUM_IMAGES.value}_{width}x{height}_{_NUM_SYNSETS.value}'
  manual, data_dir = os.path.join(workdir, f'jpegs_{tag}'), os.path.join(workdir, f'tfds_{tag}')
  if not _KEEP.value:
    shutil.rmtree(manual, ignore_errors=True)
    shutil.rmtree(data_dir, ignore_errors=True)
  t0 = time.perf_counter()
  if not os.path.isdir(manual):
    write_jpegs(manual + '.tmp', _NUM_IMAGES.value, sorted_wnids()[:_NUM_SYNSETS.value], width, height)
    os.rename(manual + '.tmp', manual)
  t1 = time.perf_counter()
  build_lib.build('ilsvrc2012_cls_loc', data_dir, manual_dir=manual, config='original')
  t2 = time.perf_counter()
  source = pipeline.open_source('ilsvrc2012_cls_loc/original', 'train', data_dir=data_dir)
  return source, t1 - t0, t2 - t1


def make_config():
  """The trainer's base config with this run's network, dtype, batch and crop."""
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'configs', 'common.py')
  spec = importlib.util.spec_from_file_location('overfeat_configs_common', path)
  common = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(common)
  c = common.base_config()
  c.model.geometry, c.model.width_divisor, c.dtype = _GEOMETRY.value, _DIVISOR.value, _DTYPE.value
  c.batch_size, c.num_train_steps = _BATCH.value, _STEPS.value + _WARMUP.value
  c.crop_size = get_geometry(_GEOMETRY.value, _DIVISOR.value).input_size
  c.resize_smaller = _RESIZE.value
  return c


def make_iterator(source, config, workers: int) -> pipeline.TrainIterator:
  return pipeline.train_iterator(source, global_batch_size=config.batch_size, crop_size=config.crop_size,
                                 resize_smaller=config.resize_smaller or None, max_boxes=config.max_boxes,
                                 seed=config.seed, worker_count=workers, read_threads=_THREADS.value)


def make_step(config, mesh, source_len: int):
  """(jitted train step, initial state) exactly as the loop builds them."""
  task = classification.make_task(settings_from_config(config, 'classification'))
  steps_per_epoch = max(source_len // config.batch_size, 1)
  tx, schedule = loop.build_optimizer(config, task, steps_per_epoch, config.num_train_steps)
  init = lambda r: state_lib.create(task.init_params(r), tx, r)
  state = step_lib.jit_init_state(mesh, init)(jax.random.key(config.seed))
  return step_lib.jit_train_step(mesh, loss_fn=task.loss_fn, tx=tx, schedule=schedule), state


def input_only(iterator) -> tuple[float, float]:
  """(seconds per batch, CPU-seconds per batch of this process and its workers) of the iterator alone."""
  for _ in range(_WARMUP.value):
    next(iterator)
  t0, c0 = time.perf_counter(), cpu_time.tree_cpu_seconds()
  for _ in range(_STEPS.value):
    next(iterator)
  cpu = cpu_time.tree_cpu_seconds() - c0
  return (time.perf_counter() - t0) / _STEPS.value, cpu / _STEPS.value


def compute_only(step, state, batch):
  """(seconds per step on one device-resident batch, state): no input at all, blocked once at the end."""
  for _ in range(_WARMUP.value):
    state, _ = step(state, batch)
  jax.block_until_ready(state)
  t0 = time.perf_counter()
  for _ in range(_STEPS.value):
    state, _ = step(state, batch)
  jax.block_until_ready(state)
  return (time.perf_counter() - t0) / _STEPS.value, state


def end_to_end(step, state, batches) -> tuple[float, float, float, object]:
  """(seconds per step, of which blocked in next(), of which in the step call, state), pipeline feeding."""
  for _ in range(_WARMUP.value):
    state, _ = step(state, next(batches))
  jax.block_until_ready(state)
  waited = dispatched = 0.0
  t0 = time.perf_counter()
  for _ in range(_STEPS.value):
    w0 = time.perf_counter()
    batch = next(batches)
    w1 = time.perf_counter()
    state, metrics = step(state, batch)
    waited, dispatched = waited + w1 - w0, dispatched + time.perf_counter() - w1
  jax.block_until_ready((state, metrics))
  n = _STEPS.value
  return (time.perf_counter() - t0) / n, waited / n, dispatched / n, state


def verdict(t_e2e: float, t_wait: float, t_compute: float) -> str:
  """Whether the device idles, and whether the input (time blocked in next()) explains it."""
  idle = max(1.0 - t_compute / t_e2e, 0.0)
  if idle < 0.1:
    return f'the accelerator is busy {100 * (1 - idle):.0f}% of the time: the input keeps up'
  cause = ('it waits for data' if t_wait >= 0.5 * idle * t_e2e else
           'the input is not the cause (little time blocked in next()): host work in the loop or contention')
  return f'the accelerator idles {100 * idle:.0f}% of the time; {cause}'


def main(argv: list[str]) -> None:
  del argv
  os.makedirs(_WORKDIR.value, exist_ok=True)
  source, t_write, t_build = prepare_source(_WORKDIR.value)
  config = make_config()
  mesh = mesh_lib.make_mesh()
  if config.batch_size % mesh.devices.size:
    raise InputError(f'--batch {config.batch_size} does not split over {mesh.devices.size} devices')
  sharding = mesh_lib.batch_sharding(mesh)
  step, state = make_step(config, mesh, len(source))
  workers = [pipeline.resolve_worker_count(w) for w in _WORKERS.value]
  d = jax.devices()[0]
  print(f'device: {d.platform} {d.device_kind} x{jax.device_count()}; host cores usable '
        f'{pipeline.usable_cores()} of {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}; jax '
        f'{jax.__version__}')
  print(f'data: {len(source)} JPEGs {_IMAGE_SIZE.value} (written in {t_write:.1f} s, built in '
        f'{t_build:.1f} s); {config.model.geometry}/{_DIVISOR.value} {_DTYPE.value}, batch {config.batch_size}, '
        f'crop {config.crop_size}, resize_smaller {config.resize_smaller}, worker counts {workers}, '
        f'read_threads {_THREADS.value}')
  first = mesh_lib.to_global(next(make_iterator(source, config, 0)), sharding)
  t_compute, state = compute_only(step, state, first)
  b = config.batch_size
  print('| workers | measurement | ms/step | img/s | img per CPU-second | data wait % | step call % | '
        'device busy % |')
  print('|---|---|---|---|---|---|---|---|')
  print(f'| | compute only | {t_compute * 1e3:.1f} | {b / t_compute:.1f} | | | | 100.0 |')
  for w in workers:
    t_input, cpu_input = input_only(make_iterator(source, config, w))
    batches = pipeline.Prefetcher(make_iterator(source, config, w),
                                  lambda x: mesh_lib.to_global(x, sharding), size=_PREFETCH.value)
    try:
      t_e2e, t_wait, t_call, state = end_to_end(step, state, batches)
    finally:
      batches.close()
    print(f'| {w} | input only | {t_input * 1e3:.1f} | {b / t_input:.1f} | {b / cpu_input:.0f} | | | |')
    print(f'| {w} | end to end | {t_e2e * 1e3:.1f} | {b / t_e2e:.1f} | | {100 * t_wait / t_e2e:.1f} | '
          f'{100 * t_call / t_e2e:.1f} | {100 * min(t_compute / t_e2e, 1.0):.1f} |', flush=True)
    print(f'verdict ({w} workers): {verdict(t_e2e, t_wait, t_compute)} (input alone {b / t_input:.0f} img/s, '
          f'compute alone {b / t_compute:.0f} img/s)')
  print(f'load average after: {os.getloadavg()[0]:.1f}')
  print(f'input pipeline: {b / cpu_input:.0f} img/s per CPU-second (workers {w}: {b / t_input:.0f} img/s wall)')


if __name__ == '__main__':
  cli.run(main)
