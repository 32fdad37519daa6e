r"""Where the work is: FLOPs per layer, XLA's own count, and the ceilings they imply on an accelerator.

The analysis of issue "Speed on accelerators" that needs no GPU: per-layer multiply-adds from the geometry, the
forward + backward count (about 3x the forward; conv1 needs no input gradient), XLA's `cost_analysis()` of the
compiled gradient step for comparison, the arithmetic intensity of each layer in bfloat16 (how far each layer is
from being bandwidth-bound on an H100: 796 TFLOP/s / 3.35 TB/s = ~240 FLOP/byte), and the work of dense
six-scale + flip + offset inference per image (layers 1-5 once per scale and flip, the classifier once per offset).

  python experiments/benchmarks/flop_accounting.py [--batch=256] [--peak_tflops=796] [--hbm_tbps=3.35]
"""

import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import optax

from overfeat_jax.inference.multiscale import PAPER_SCALES
from overfeat_jax.models import ACCURATE, FAST, OverFeat

_BATCH = flags.DEFINE_integer('batch', 256, 'Global batch for the XLA cost analysis.')
_PEAK = flags.DEFINE_float('peak_tflops', 796.0, 'Matrix peak of the target accelerator (H100 bf16: 796).')
_HBM = flags.DEFINE_float('hbm_tbps', 3.35, 'Memory bandwidth of the target accelerator in TB/s (H100 SXM).')
_XLA = flags.DEFINE_bool('xla', True, 'Also compile the gradient step on this backend and read its FLOPs.')


def layer_table(geometry, num_classes=1000):
  """Rows: (layer, out size, GMAC fwd, GFLOP fwd+bwd, weight MB bf16, activation MB bf16, FLOP/byte)."""
  size, channels, rows = geometry.input_size, 3, []
  macs = geometry.multiply_adds(size, size, num_classes)
  sizes = {n: s for n, _, s in geometry.layer_sizes(size, num_classes)}
  chans = {n: c for n, c, _ in geometry.layer_sizes(size, num_classes)}
  kernels = [s.kernel for s in geometry.stages] + [geometry.fc_kernel] + [1] * len(geometry.hidden)
  for i, (name, mac) in enumerate(macs.items()):
    out_c, out_s = chans[name], sizes[name]
    weights = out_c * channels * kernels[i] ** 2
    activations = out_c * out_s ** 2  # per image
    # conv1's input gradient is not needed: forward 1x, weight grad 1x, input grad 1x for the others.
    train_flops = 2 * mac * (2 if i == 0 else 3)
    bytes_moved = 2 * (weights + activations)  # bf16, one read/write each, per image (a lower bound)
    rows.append((name, out_s, mac / 1e9, train_flops / 1e9, 2 * weights / 1e6, 2 * activations / 1e6,
                 2 * mac / bytes_moved))
    channels = out_c
  return rows


def print_layer_table(geometry):
  rows = layer_table(geometry)
  print(f'\n{geometry.name} at {geometry.input_size}x{geometry.input_size}, per image')
  print(f'| layer | out | GMAC fwd | GFLOP fwd+bwd | weights MB (bf16) | act MB (bf16) | FLOP/byte (b=1) |')
  print('|---|---|---|---|---|---|---|')
  for name, out, gmac, gflop, wmb, amb, intensity in rows:
    print(f'| {name} | {out} | {gmac:.3f} | {gflop:.2f} | {wmb:.1f} | {amb:.2f} | {intensity:.0f} |')
  total = sum(r[3] for r in rows)
  print(f'| total | | {sum(r[2] for r in rows):.3f} | {total:.2f} | | | |')
  ceiling = _PEAK.value * 1e12 / (total * 1e9)
  print(f'ceiling at {_PEAK.value:.0f} TFLOP/s: {ceiling:,.0f} img/s training; 60% of it: {0.6 * ceiling:,.0f}')
  return total


def xla_train_flops(geometry, batch):
  """FLOPs XLA counts for one SGD-momentum gradient step of the full network (compiled, never run)."""
  model = OverFeat(geometry, dtype=jnp.bfloat16)
  size = geometry.input_size
  images = jax.ShapeDtypeStruct((batch, size, size, 3), jnp.uint8)
  labels = jax.ShapeDtypeStruct((batch,), jnp.int32)
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)))['params'])
  tx = optax.sgd(0.05, momentum=0.6)
  opt_state = jax.eval_shape(tx.init, params)

  def step(params, opt_state, images, labels):
    def loss_fn(p):
      logits = model.apply({'params': p}, images, train=True, rngs={'dropout': jax.random.key(0)})
      return optax.softmax_cross_entropy_with_integer_labels(logits[:, 0, 0], labels).mean()
    grads = jax.grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  start = time.perf_counter()
  compiled = jax.jit(step).lower(params, opt_state, images, labels).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return cost['flops'] / batch / 1e9, time.perf_counter() - start


def dense_inference_flops(geometry, scales=PAPER_SCALES, flips=2):
  """GFLOP per image of six-scale, flipped, offset-pooled dense classification.

  Layers 1-5 run once per scale and flip; the classifier runs once per cell of the interleaved fine map (the
  k*k offsets together have exactly `output_size(h, fine) * output_size(w, fine)` cells).
  """
  heads = geometry.fc_names()
  total = 0.0
  for h, w in scales:
    macs = geometry.multiply_adds(h, w, 1000)
    features = sum(v for n, v in macs.items() if n not in heads)
    per_cell = sum(geometry.multiply_adds(geometry.input_size, geometry.input_size, 1000)[n] for n in heads)
    cells = geometry.output_size(h, fine=True) * geometry.output_size(w, fine=True)
    total += flips * 2 * (features + cells * per_cell)
  return total / 1e9


def main(argv):
  del argv
  for geometry in (FAST, ACCURATE):
    analytic = print_layer_table(geometry)
    if _XLA.value:
      per_image, seconds = xla_train_flops(geometry, _BATCH.value)
      print(f'XLA cost_analysis of the compiled step on {jax.devices()[0].platform}: {per_image:.2f} GFLOP/img '
            f'(analytic {analytic:.2f}; compile {seconds:.1f} s)')
    gflop = dense_inference_flops(geometry)
    print(f'dense 6 scales x 2 flips x {geometry.offset_pool ** 2} offsets: {gflop:.0f} GFLOP/img; ceiling at '
          f'{_PEAK.value:.0f} TFLOP/s: {_PEAK.value * 1e3 / gflop:,.0f} img/s')


if __name__ == '__main__':
  app.run(main)
