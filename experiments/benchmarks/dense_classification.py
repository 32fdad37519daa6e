r"""Dense classification speed on the CPU, and the classify command end to end (the issue's 10x goal).

Modes (`--modes`, any of):
  * `single`: one view per image at the network's size (fast 231, accurate 221), batches of `--batch_size`:
    steady-state images/s (median of `--repeats` runs, compilation excluded) and the multiply-adds rate.
  * `multiscale`: the paper's six scales (`PAPER_SCALES`), flips and offset pooling per image (one jitted
    program for all twelve views): images/s.
  * `end_to_end`: `python -m overfeat_jax.classify --top=5 --timing` on `--images` random 231x231 JPEGs with a
    full-size fast weight file in the release layout (random values, written once to `--workdir`), as a
    subprocess: wall time including interpreter start-up, imports, weight reading, compilation, compute, output,
    and the command's own breakdown. Compared with the release's 1.8 s/image on this kind of 2-core machine.

  JAX_PLATFORMS=cpu python experiments/benchmarks/dense_classification.py --modes=end_to_end --images=100
  JAX_PLATFORMS=cpu python experiments/benchmarks/dense_classification.py --modes=single,multiscale --batch_size=4
"""

import os
import statistics
import subprocess
import sys
import time

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from overfeat_jax import cli
from overfeat_jax.inference.multiscale import PAPER_SCALES, make_multiscale_classifier
from overfeat_jax.models import get_geometry
from overfeat_jax.models import release_weights
from overfeat_jax.models.release_weights import random_params
from overfeat_jax.models.overfeat import OverFeat

_MODES = flags.DEFINE_list('modes', ['single', 'multiscale', 'end_to_end'], 'What to time.')
_MODELS = flags.DEFINE_list('models', ['fast', 'accurate'], 'Networks (single and multiscale modes).')
_BATCH = flags.DEFINE_integer('batch_size', 8, 'Batch size (single mode; end_to_end passes it to classify).')
_MS_BATCH = flags.DEFINE_integer('multiscale_batch_size', 1, 'Images per multiscale call.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed runs after the compile run.')
_DIVISOR = flags.DEFINE_integer('width_divisor', 1, 'Divide every width (if full size is too slow).')
_IMAGES = flags.DEFINE_integer('images', 100, 'Images for end_to_end.')
_RUNS = flags.DEFINE_integer('runs', 2, 'End-to-end runs (the first may find a cold page cache).')
_WORKDIR = flags.DEFINE_string('workdir', '/tmp/overfeat_classify_bench', 'Images and the weight file.')
_EXTRA = flags.DEFINE_list('classify_flags', [], 'Extra flags for the classify command, e.g. --batch_size=4.')
RELEASE_S_PER_IMAGE = 1.8  # spec section 2: the release on a 2-core machine, fast network, 231x231


def _time(fn, *args) -> tuple[float, float]:
  """(first call incl. compile, median of the timed calls) in seconds."""
  start = time.perf_counter()
  jax.block_until_ready(fn(*args))
  first = time.perf_counter() - start
  times = []
  for _ in range(_REPEATS.value):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return first, statistics.median(times)


def bench_single(name: str) -> str:
  geometry = get_geometry(name, _DIVISOR.value)
  model = OverFeat(geometry, num_classes=1000)
  params = jax.device_put(random_params(geometry))
  size, batch = geometry.input_size, _BATCH.value
  images = jnp.asarray(np.random.default_rng(1).integers(0, 256, (batch, size, size, 3), dtype=np.uint8))
  fn = jax.jit(lambda p, x: jax.nn.softmax(model.apply({'params': p}, x), axis=-1))
  first, median = _time(fn, params, images)
  gmacs = sum(geometry.multiply_adds(size, size, 1000).values()) / 1e9
  return (f'| {geometry.name} single {size}x{size} | {batch} | {first:.2f} | {median:.3f} | {batch / median:.2f} '
          f'| {gmacs * batch / median:.1f} |')


def bench_multiscale(name: str) -> str:
  geometry = get_geometry(name, _DIVISOR.value)
  model = OverFeat(geometry, num_classes=1000)
  params = jax.device_put(random_params(geometry))
  batch = _MS_BATCH.value
  classify = make_multiscale_classifier(model, scales=PAPER_SCALES, flips=True)
  images = jnp.asarray(np.random.default_rng(2).integers(0, 256, (batch, 461, 569, 3), dtype=np.uint8))
  first, median = _time(classify, params, images)
  gmacs = 2 * sum(sum(geometry.multiply_adds(h, w, 1000).values()) for h, w in PAPER_SCALES) / 1e9
  return (f'| {geometry.name} 6 scales + flips (coarse-count {gmacs:.0f} G MACs/img) | {batch} | {first:.2f} '
          f'| {median:.3f} | {batch / median:.3f} | {gmacs * batch / median:.1f} |')


def _prepare_end_to_end(workdir: str) -> tuple[str, list[str]]:
  os.makedirs(workdir, exist_ok=True)
  weights = os.path.join(workdir, 'net_weight_0_random')
  if not os.path.exists(weights) or os.path.getsize(weights) != release_weights.expected_bytes(get_geometry('fast')):
    release_weights.save_release_weights(random_params(get_geometry('fast')), get_geometry('fast'), weights)
  rng, paths = np.random.default_rng(3), []
  for i in range(_IMAGES.value):
    path = os.path.join(workdir, f'image_{i:04d}.jpg')
    if not os.path.exists(path):
      Image.fromarray(rng.integers(0, 256, (231, 231, 3), dtype=np.uint8)).save(path, quality=90)
    paths.append(path)
  return weights, paths


def bench_end_to_end() -> list[str]:
  weights, paths = _prepare_end_to_end(_WORKDIR.value)
  command = [sys.executable, '-m', 'overfeat_jax.classify', '--model=fast', f'--weights={weights}', '--top=5',
             '--timing', f'--batch_size={_BATCH.value}', *_EXTRA.value, *paths]
  lines = []
  for run in range(_RUNS.value):
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if result.returncode != 0:
      raise RuntimeError(f'classify failed: {result.stderr[-2000:]}')
    speedup = RELEASE_S_PER_IMAGE * len(paths) / wall
    lines.append(f'run {run + 1}: {len(paths)} images in {wall:.2f} s wall ({wall / len(paths):.3f} s/image), '
                 f'{speedup:.1f}x the release ({RELEASE_S_PER_IMAGE} s/image = {RELEASE_S_PER_IMAGE * len(paths):.0f} '
                 f's); load average before: {os.getloadavg()[0]:.2f}')
    lines += ['    ' + line for line in result.stderr.splitlines() if line.startswith('timing:')]
  return lines


def main(argv):
  del argv
  print(f'jax {jax.__version__}, devices {jax.devices()}, load average {os.getloadavg()}')
  header = '| network / mode | batch | first call s (compile) | median s | images/s | G MACs/s |\n|---|---|---|---|---|---|'
  rows = [bench_single(n) for n in _MODELS.value if 'single' in _MODES.value]
  rows += [bench_multiscale(n) for n in _MODELS.value if 'multiscale' in _MODES.value]
  if rows:
    print(header, *rows, sep='\n', flush=True)
  if 'end_to_end' in _MODES.value:
    print(*bench_end_to_end(), sep='\n')


if __name__ == '__main__':
  cli.run(main)
