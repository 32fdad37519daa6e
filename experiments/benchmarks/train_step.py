"""Images/s and model FLOP utilisation of the fast and accurate train steps, synthetic data on the device.

MFU = (XLA's FLOP count of one compiled step / step time) / peak. The FLOP count comes from
`jax.jit(step).lower(...).compile().cost_analysis()['flops']`; one MFU column per --peak_tflops (default: the
H100/H200 datasheet's dense bf16 989.4 TFLOP/s, and 796, the matmul peak measured on an H100; on CPU the MFU
columns only mean something with the CPU's real peak). A list --batch times each batch in turn and stops at the
first that does not fit the device (out of memory): the last row of each network is the largest that fits
(among those tried).

  python experiments/benchmarks/train_step.py --width_divisor=16 --batch=8 --steps=3 --peak_tflops=0.1
  python experiments/benchmarks/train_step.py --batch=256,512,1024,2048,4096 --dtype=bfloat16   # one GPU
"""

import time

import jax
import numpy as np
import optax
from absl import app, flags

from overfeat_jax import cli
from overfeat_jax.models import build
from overfeat_jax.models.geometry import get_geometry
from overfeat_jax.models.overfeat import init_params
from overfeat_jax.parallel import mesh as mesh_lib
from overfeat_jax.tasks import losses
from overfeat_jax.train import optim
from overfeat_jax.train import state as state_lib
from overfeat_jax.train import step as step_lib

_NETS = flags.DEFINE_list('nets', ['fast', 'accurate'], 'Geometries to time.')
_BATCHES = flags.DEFINE_list('batch', ['256'], 'Global batch sizes, ascending (e.g. 256,512); stops at the first OOM.')
_DTYPE = flags.DEFINE_enum('dtype', 'bfloat16', list(build.DTYPES), 'Compute dtype (params stay float32).')
_DIV = flags.DEFINE_integer('width_divisor', 1, 'Divide every width (small CPU runs).')
_STEPS = flags.DEFINE_integer('steps', 20, 'Timed steps (after one warm-up step).')
_CLASSES = flags.DEFINE_integer('num_classes', 1000, 'Output classes.')
_PEAK = flags.DEFINE_list('peak_tflops', ['989.4', '796'], 'Peak TFLOP/s of the whole mesh, one MFU column each.')


def out_of_memory(error: Exception) -> bool:
  return 'RESOURCE_EXHAUSTED' in str(error) or 'out of memory' in str(error).lower()


def time_net(name: str, batch_size: int) -> dict:
  """Compiles and times the paper's SGD train step of one network on synthetic device data."""
  geometry = get_geometry(name, _DIV.value)
  model = build.classifier(name, _DIV.value, _CLASSES.value, dtype=_DTYPE.value)
  mesh = mesh_lib.make_mesh()
  schedule = optax.constant_schedule(5e-2)
  tx = optim.make_optimizer('sgd', schedule, momentum=0.6, weight_decay=1e-5)

  def loss_fn(params, batch, rng, *, train):
    logits = model.apply({'params': params}, batch['image'], train=train, rngs={'dropout': rng})
    return losses.softmax_cross_entropy(logits.reshape(logits.shape[0], -1), batch['label']), {}

  state = step_lib.jit_init_state(mesh, lambda r: state_lib.create(init_params(model, r), tx, r))(
      jax.random.key(0))
  size, rng = geometry.input_size, np.random.default_rng(0)
  batch = mesh_lib.to_global({
      'image': rng.integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8),
      'label': rng.integers(0, _CLASSES.value, (batch_size,)).astype(np.int32)},
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
  return {'net': geometry.name, 'batch': batch_size, 'params': geometry.param_count(_CLASSES.value),
          'compile_s': compile_s, 'ms_per_step': 1e3 * per_step, 'img_per_s': batch_size / per_step,
          'gflop_per_img': flops / batch_size / 1e9,
          'mfu': [flops / per_step / (float(p) * 1e12) for p in _PEAK.value]}


def main(argv: list[str]) -> None:
  del argv
  peaks = [float(p) for p in _PEAK.value]
  print(f'device: {jax.devices()[0].device_kind} x{jax.device_count()} | batches {",".join(_BATCHES.value)} | '
        f'{_DTYPE.value} | width /{_DIV.value} | peaks {peaks} TFLOP/s')
  print('| net | batch | params | compile s | ms/step | img/s | GFLOP/img (XLA) | '
        + ' | '.join(f'MFU vs {p:g}' for p in peaks) + ' |')
  print('|---|---|---|---|---|---|---|' + '---|' * len(peaks))
  for name in _NETS.value:
    largest = None
    for b in (int(x) for x in _BATCHES.value):
      try:
        r = time_net(name, b)
      except Exception as e:  # pylint: disable=broad-except
        if not out_of_memory(e):
          raise
        print(f'| {name} | {b} | out of memory | | | | |' + ' |' * len(peaks), flush=True)
        break
      largest = b
      print(f"| {r['net']} | {b} | {r['params']:,} | {r['compile_s']:.1f} | {r['ms_per_step']:.1f} | "
            f"{r['img_per_s']:.1f} | {r['gflop_per_img']:.3f} | "
            + ' | '.join(f'{100 * m:.2f}%' for m in r['mfu']) + ' |', flush=True)
    print(f'largest batch that fits ({name}, of {",".join(_BATCHES.value)}): {largest}')


if __name__ == '__main__':
  cli.run(main)
