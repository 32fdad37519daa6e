r"""Dense evaluation vs evaluating every window separately, at the fine stride (paper section 3.3; Giusti et al.).

For an image of `--size` x `--size`, the windows are the fine-stride grid of the network's input size (fast:
231 px every 16 px). "Dense": `dense_scores(..., fine=True)`, layers 1-5 once on the whole image, the
classifier once per offset. "Windows": every window cropped and run through the network on its own, in
batches of `--batch_size`. Reported: both times (median of `--repeats`, compilation excluded), the measured
speedup, and the ratio of multiply-add counts from `Geometry.multiply_adds`.

The two do not give identical numbers: the zero padding of conv3-5 pads the whole image in the dense pass but
each window in the separate pass, so cells near a window border see real neighbours instead of zeros (the paper's
networks are not exactly translation-equivariant). The largest logit difference, relative to the largest logit, is
printed.

  JAX_PLATFORMS=cpu python experiments/benchmarks/dense_vs_windows.py --model=fast --size=295
"""

import os
import statistics
import time

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from overfeat_jax import cli
from overfeat_jax.inference.dense import dense_scores
from overfeat_jax.models import get_geometry
from overfeat_jax.models.overfeat import OverFeat
from overfeat_jax.models.release_weights import random_params

_MODEL = flags.DEFINE_string('model', 'fast', 'fast or accurate.')
_SIZE = flags.DEFINE_integer('size', 295, 'Square image size.')
_DIVISOR = flags.DEFINE_integer('width_divisor', 1, 'Divide every width (if full size is too slow).')
_BATCH = flags.DEFINE_integer('batch_size', 8, 'Windows per call in the separate evaluation.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed runs.')


def op_counts(geometry, size: int, num_classes: int = 1000) -> tuple[int, int, int]:
  """(windows, dense multiply-adds, separate multiply-adds) for a square image at the fine stride.

  Dense: layers 1-5 once on the whole image, plus the classifier once per output cell (each fine-stride cell is
  one classifier evaluation on one offset's pooled map). Separate: the whole network once per window.
  """
  n = geometry.output_size(size, fine=True)
  window = geometry.multiply_adds(geometry.input_size, geometry.input_size, num_classes)
  fc = set(geometry.fc_names())
  features = sum(v for name, v in geometry.multiply_adds(size, size, num_classes).items() if name not in fc)
  head_per_window = sum(v for name, v in window.items() if name in fc)
  return n * n, features + n * n * head_per_window, n * n * sum(window.values())


def _median(fn) -> float:
  jax.block_until_ready(fn())
  times = []
  for _ in range(_REPEATS.value):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main(argv):
  del argv
  geometry = get_geometry(_MODEL.value, _DIVISOR.value)
  model = OverFeat(geometry, num_classes=1000)
  params = jax.device_put(random_params(geometry))
  size, window, stride = _SIZE.value, geometry.input_size, geometry.fine_stride
  image = jnp.asarray(np.random.default_rng(0).integers(0, 256, (1, size, size, 3), dtype=np.uint8))
  dense = jax.jit(lambda p, x: dense_scores(model, p, x, fine=True))  # logits [1, n, n, C]
  n = geometry.output_size(size, fine=True)
  crops = jnp.stack([image[0, r * stride:r * stride + window, c * stride:c * stride + window]
                     for r in range(n) for c in range(n)])  # [n*n, window, window, 3]
  pad = -len(crops) % _BATCH.value
  crops = jnp.concatenate([crops, jnp.zeros((pad,) + crops.shape[1:], crops.dtype)])
  single = jax.jit(lambda p, x: model.apply({'params': p}, x)[:, 0, 0])
  batches = crops.reshape((-1, _BATCH.value) + crops.shape[1:])
  separate = lambda: [single(params, b) for b in batches]
  t_dense, t_windows = _median(lambda: dense(params, image)), _median(separate)
  per_window = jnp.concatenate(separate())[:n * n].reshape(n, n, -1)
  difference = float(jnp.abs(dense(params, image)[0] - per_window).max() / jnp.abs(per_window).max())
  windows, dense_ops, window_ops = op_counts(geometry, size)
  print(f'jax {jax.__version__}, load average {os.getloadavg()}')
  print(f'| network | image | windows (fine stride {stride}) | dense s | windows s | measured speedup | '
        'multiply-add ratio | max logit difference (relative) |\n|---|---|---|---|---|---|---|---|')
  print(f'| {geometry.name} | {size}x{size} | {windows} ({n}x{n}) | {t_dense:.3f} | {t_windows:.3f} | '
        f'{t_windows / t_dense:.1f}x | {window_ops / dense_ops:.1f}x ({window_ops / 1e9:.1f} G / {dense_ops / 1e9:.1f} G) '
        f'| {difference:.2e} |')


if __name__ == '__main__':
  cli.run(main)
