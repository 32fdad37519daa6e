r"""Does a bfloat16 run's loss curve track float32's? The embedded demo's classification, same seed and data.

bfloat16 is only the compute dtype (activations and convolution inputs); params, the loss and the optimizer
stay float32 (`config.dtype`, `tasks.classification`). Both runs use the trainer's own pieces (`make_task`,
`loop.build_optimizer`, `jit_train_step`), the same initial parameters, the same dropout keys and the very
same batches (drawn once from the real input pipeline and replayed), so the gap between the curves is the
numerics and nothing else. Writes both curves to a PNG and prints the max and mean relative gap per step and
of the curves smoothed over `--smooth` steps. Asserts nothing.

  python experiments/benchmarks/bf16_vs_f32.py --steps=600 --out=/tmp/bf16_vs_f32.png
  JAX_PLATFORMS=cpu python experiments/benchmarks/bf16_vs_f32.py --steps=200 --width_divisor=8
"""

import importlib.util
import os
import time

from absl import flags
import jax
import matplotlib
import numpy as np

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from overfeat_jax import cli  # pylint: disable=g-import-not-at-top,wrong-import-position
from overfeat_jax.parallel import mesh as mesh_lib
from overfeat_jax import config_files
from overfeat_jax.tasks import classification
from overfeat_jax.train import inputs, loop
from overfeat_jax.train import state as state_lib
from overfeat_jax.train import step as step_lib

_STEPS = flags.DEFINE_integer('steps', 300, 'Train steps of each run.')
_BATCH = flags.DEFINE_integer('batch', 64, 'Global batch size.')
_DIVISOR = flags.DEFINE_integer('width_divisor', 8, 'Width divisor of the small network (the demo: 8).')
_TRAIN_SIZE = flags.DEFINE_integer('train_size', 10_000, 'Embedded training images (the demo: 10,000).')
_DATA_DIR = flags.DEFINE_string('data_dir', os.path.expanduser('~/tensorflow_datasets'),
                                'tfds data_dir (the embedded dataset is built there on first use).')
_SMOOTH = flags.DEFINE_integer('smooth', 20, 'Moving-average window for the smoothed gap and the plot.')
_OUT = flags.DEFINE_string('out', '/tmp/overfeat_bf16_vs_f32.png', 'PNG of the two loss curves.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of parameters, dropout and data.')

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'configs', 'embedded.py')


def demo_config(dtype: str):
  """The embedded demo's config (experiments/configs/embedded.py) with this run's sizes and `dtype`."""
  spec = importlib.util.spec_from_file_location('overfeat_embedded_config', CONFIG)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config()
  c.dtype, c.seed, c.batch_size, c.num_train_steps = dtype, _SEED.value, _BATCH.value, _STEPS.value
  c.model.width_divisor, c.data.data_dir = _DIVISOR.value, _DATA_DIR.value
  c.data.options = {'train_size': _TRAIN_SIZE.value, 'test_size': 16}
  return c


def fixed_batches(config) -> list[dict]:
  """`--steps` host batches from the real pipeline (random crops and flips), drawn once for both runs."""
  data = config_files.input_settings(config, 'classification')
  source = inputs.open_split(data, data.train_split)
  iterator = inputs.train_iterator(data, source)
  return [next(iterator) for _ in range(_STEPS.value)]


def train_losses(dtype: str, batches: list[dict]) -> tuple[np.ndarray, float]:
  """Per-step losses of one run (fetched once at the end: no host sync in the loop) and its seconds."""
  config = demo_config(dtype)
  task = classification.make_task(config_files.settings_from_config(config, 'classification'))
  steps_per_epoch = max(_TRAIN_SIZE.value // _BATCH.value, 1)
  tx, schedule = loop.build_optimizer(config, task, steps_per_epoch, _STEPS.value)
  mesh = mesh_lib.make_mesh()
  rng = jax.random.key(config.seed)
  state = step_lib.jit_init_state(mesh, lambda r: state_lib.create(task.init_params(r), tx, r))(rng)
  step = step_lib.jit_train_step(mesh, loss_fn=task.loss_fn, tx=tx, schedule=schedule)
  sharding = mesh_lib.batch_sharding(mesh)
  losses, t0 = [], time.perf_counter()
  for batch in batches:
    state, metrics = step(state, mesh_lib.to_global({k: batch[k] for k in ('image', 'label')}, sharding))
    losses.append(metrics['loss'])
  losses = np.asarray(jax.device_get(losses), np.float64)
  return losses, time.perf_counter() - t0


def smooth(x: np.ndarray, window: int) -> np.ndarray:
  """Trailing moving average (the first points average what exists so far)."""
  c = np.cumsum(np.insert(x, 0, 0.0))
  idx = np.arange(1, len(x) + 1)
  lo = np.maximum(idx - window, 0)
  return (c[idx] - c[lo]) / (idx - lo)


def gaps(f32: np.ndarray, bf16: np.ndarray, window: int) -> dict[str, float]:
  """Max and mean of |bf16 - f32| / f32, per step and between the smoothed curves."""
  raw = np.abs(bf16 - f32) / np.abs(f32)
  sm = np.abs(smooth(bf16, window) - smooth(f32, window)) / np.abs(smooth(f32, window))
  return {'max_rel_gap': float(raw.max()), 'mean_rel_gap': float(raw.mean()),
          'max_rel_gap_smoothed': float(sm.max()), 'mean_rel_gap_smoothed': float(sm.mean())}


def plot(f32: np.ndarray, bf16: np.ndarray, window: int, path: str) -> None:
  fig, ax = plt.subplots(figsize=(7, 4))
  steps = np.arange(1, len(f32) + 1)
  for curve, name, colour in ((f32, 'float32', 'tab:blue'), (bf16, 'bfloat16', 'tab:orange')):
    ax.plot(steps, curve, color=colour, alpha=0.25, linewidth=0.8)
    ax.plot(steps, smooth(curve, window), color=colour, label=f'{name} (mean of {window})')
  ax.set_xlabel('step')
  ax.set_ylabel('training loss')
  ax.set_title('OverFeat small on the embedded dataset: same seed, same batches')
  ax.legend()
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv: list[str]) -> None:
  del argv
  batches = fixed_batches(demo_config('float32'))
  f32, t32 = train_losses('float32', batches)
  bf16, t16 = train_losses('bfloat16', batches)
  d = jax.devices()[0]
  print(f'device: {d.platform} {d.device_kind}; jax {jax.__version__}; small/{_DIVISOR.value}, batch '
        f'{_BATCH.value}, {_STEPS.value} steps, {_TRAIN_SIZE.value} embedded images')
  print('| dtype | first loss | last loss | mean of last 10% | seconds (incl. compile) |')
  print('|---|---|---|---|---|')
  tail = max(len(f32) // 10, 1)
  for name, curve, seconds in (('float32', f32, t32), ('bfloat16', bf16, t16)):
    print(f'| {name} | {curve[0]:.4f} | {curve[-1]:.4f} | {curve[-tail:].mean():.4f} | {seconds:.1f} |')
  g = gaps(f32, bf16, _SMOOTH.value)
  print(' '.join(f'{k}={v:.4f}' for k, v in g.items()))
  plot(f32, bf16, _SMOOTH.value, _OUT.value)
  print(f'plot: {_OUT.value}')


if __name__ == '__main__':
  cli.run(main)
