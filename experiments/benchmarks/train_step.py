"""Images/s and model FLOP utilisation of the fast and accurate train steps, synthetic data on the device.

MFU = (XLA's FLOP count of one compiled step / step time) / peak. The FLOP count comes from
`jax.jit(step).lower(...).compile().cost_analysis()['flops']`; the peak from --peak_tflops (default: H100
bf16 dense, 796 TFLOP/s; on CPU the MFU column only means something with the CPU's real peak).

  python experiments/benchmarks/train_step.py --width_divisor=16 --batch=8 --steps=3 --peak_tflops=0.1
  python experiments/benchmarks/train_step.py --batch=256 --dtype=bfloat16            # one H100
"""

import time

import jax
import numpy as np
import optax
from absl import app, flags

from overfeat_jax import cli
from overfeat_jax.models.geometry import get_geometry
from overfeat_jax.models.overfeat import OverFeat, init_params
from overfeat_jax.parallel import mesh as mesh_lib
from overfeat_jax.train import losses, optim
from overfeat_jax.train import state as state_lib
from overfeat_jax.train import step as step_lib
from overfeat_jax.train.classification import DTYPES

_NETS = flags.DEFINE_list('nets', ['fast', 'accurate'], 'Geometries to time.')
_BATCH = flags.DEFINE_integer('batch', 256, 'Global batch size.')
_DTYPE = flags.DEFINE_enum('dtype', 'bfloat16', list(DTYPES), 'Compute dtype (params stay float32).')
_DIV = flags.DEFINE_integer('width_divisor', 1, 'Divide every width (small CPU runs).')
_STEPS = flags.DEFINE_integer('steps', 20, 'Timed steps (after one warm-up step).')
_CLASSES = flags.DEFINE_integer('num_classes', 1000, 'Output classes.')
_PEAK = flags.DEFINE_float('peak_tflops', 796.0, 'Peak TFLOP/s of the whole mesh for MFU.')


def time_net(name: str) -> dict:
  """Compiles and times the paper's SGD train step of one network on synthetic device data."""
  geometry = get_geometry(name, _DIV.value)
  model = OverFeat(geometry, num_classes=_CLASSES.value, dtype=DTYPES[_DTYPE.value])
  mesh = mesh_lib.make_mesh()
  schedule = optax.constant_schedule(5e-2)
  tx = optim.make_optimizer('sgd', schedule, momentum=0.6, weight_decay=1e-5)

  def loss_fn(params, batch, rng, *, train):
    logits = model.apply({'params': params}, batch['image'], train=train, rngs={'dropout': rng})
    return losses.softmax_cross_entropy(logits.reshape(logits.shape[0], -1), batch['label']), {}

  state = step_lib.jit_init_state(mesh, lambda r: state_lib.create(init_params(model, r), tx, r))(
      jax.random.PRNGKey(0))
  size, rng = geometry.input_size, np.random.default_rng(0)
  batch = mesh_lib.to_global({
      'image': rng.integers(0, 256, (_BATCH.value, size, size, 3), dtype=np.uint8),
      'label': rng.integers(0, _CLASSES.value, (_BATCH.value,)).astype(np.int32)},
      mesh_lib.batch_sharding(mesh))
  step = step_lib.jit_train_step(mesh, loss_fn=loss_fn, tx=tx, schedule=schedule)
  t0 = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - t0
  cost = compiled.cost_analysis()
  flops = float((cost[0] if isinstance(cost, list) else cost).get('flops', float('nan')))
  state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  t0 = time.perf_counter()
  for _ in range(_STEPS.value):
    state, metrics = compiled(state, batch)
  jax.block_until_ready((state, metrics))
  per_step = (time.perf_counter() - t0) / _STEPS.value
  return {'net': geometry.name, 'params': geometry.param_count(_CLASSES.value), 'compile_s': compile_s,
          'ms_per_step': 1e3 * per_step, 'img_per_s': _BATCH.value / per_step,
          'gflop_per_img': flops / _BATCH.value / 1e9, 'mfu': flops / per_step / (_PEAK.value * 1e12)}


def main(argv: list[str]) -> None:
  del argv
  print(f'device: {jax.devices()[0].device_kind} x{jax.device_count()} | batch {_BATCH.value} | '
        f'{_DTYPE.value} | width /{_DIV.value} | peak {_PEAK.value} TFLOP/s')
  print('| net | params | compile s | ms/step | img/s | GFLOP/img (XLA) | MFU |')
  print('|---|---|---|---|---|---|---|')
  for name in _NETS.value:
    r = time_net(name)
    print(f"| {r['net']} | {r['params']:,} | {r['compile_s']:.1f} | {r['ms_per_step']:.1f} | "
          f"{r['img_per_s']:.1f} | {r['gflop_per_img']:.3f} | {100 * r['mfu']:.2f}% |", flush=True)


if __name__ == '__main__':
  cli.run(main)
