r"""Dense multi-scale inference speed: scales x flips x k*k offsets, img/s, memory, and the merge's share.

The paper's classification procedure (section 3.3) as one jitted program per configuration: resize to each
scale (static shapes: every scale compiles once, nothing recompiles between batches), dense layers 1-5, the
last pooling at every offset, the classifier, softmax, the per-class spatial max, the mean over scales and
flips. Timed from device-resident uint8 images to the averaged [B, C] scores (so the host's JPEG work is not
in it; `train_from_pipeline.py` measures that side).

Ways of batching the k*k offsets (`--variants`):
  vmap:   the library's `inference.dense.dense_scores` (`jax.vmap` of the head over `offset_pool`'s maps,
          which are cut with static slices);
  fold:   the k*k pooled maps folded into the batch axis by hand ([k*k*B, h, w, C]), one head call, unfolded
          and interleaved (what XLA makes of the vmap, spelled out);
  gather: the library's former offset pooling, a vmap over traced offsets (XLA turns it into gathers).

Also, on request: the largest batch that fits (`--find_max_batch`: bisection on `compiled.memory_analysis()`
against the device's memory, then a real run of that batch, stepping down on RESOURCE_EXHAUSTED) with the
memory per image; and localization (`--localize`: the same scales with a box regressor, top-k classes, the
greedy merge) with the merge's share of the time.

  python experiments/benchmarks/dense_inference.py --geometry=fast --dtypes=bfloat16,float32 --batch=32 \
      --variants=vmap,fold --find_max_batch --localize
  JAX_PLATFORMS=cpu python experiments/benchmarks/dense_inference.py --width_divisor=16 --num_classes=10 \
      --batch=2 --scales=245x245,281x317 --steps=2          # a seconds-long CPU run
"""

import datetime
import math
import platform
import statistics
import time
from typing import Callable, Sequence

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from overfeat_jax import cli
from overfeat_jax.errors import InputError
from overfeat_jax.inference import dense
from overfeat_jax.inference import localize as localize_lib
from overfeat_jax.inference.multiscale import PAPER_SCALES, resize_images, spatial_max
from overfeat_jax.models import build, get_geometry
from overfeat_jax.models.heads import BoxRegressor
from overfeat_jax.models.overfeat import OverFeat, init_params, max_pool

_GEOMETRY = flags.DEFINE_string('geometry', 'fast', 'fast | accurate | small.')
_DIVISOR = flags.DEFINE_integer('width_divisor', 1, 'Divide every width by this (1: the paper network).')
_CLASSES = flags.DEFINE_integer('num_classes', 1000, 'Classifier outputs.')
_DTYPES = flags.DEFINE_list('dtypes', ['bfloat16', 'float32'], 'Compute dtypes (params stay float32).')
_VARIANTS = flags.DEFINE_list('variants', ['vmap', 'fold'], 'Offset batching: vmap | fold | gather.')
_BATCH = flags.DEFINE_integer('batch', 32, 'Images per call for the throughput rows.')
_INPUT = flags.DEFINE_integer('input_size', 256, 'Side of the square uint8 input images before resizing.')
_SCALES = flags.DEFINE_list('scales', ['paper'], "'paper' (Table 5's six sizes) or HxW sizes, e.g. 245x245.")
_FLIPS = flags.DEFINE_bool('flips', True, 'Also run every scale mirrored (doubles the work).')
_STEPS = flags.DEFINE_integer('steps', 10, 'Timed calls per row (after one warm-up call).')
_MAX_BATCH = flags.DEFINE_bool('find_max_batch', False, 'Search the largest batch that fits the device.')
_MEM_LIMIT = flags.DEFINE_float('memory_limit_gb', 0.0, 'Memory to fit into; 0: the device bytes_limit.')
_MAX_CAP = flags.DEFINE_integer('max_batch_cap', 4096, 'Upper end of the batch search.')
_LOCALIZE = flags.DEFINE_bool('localize', False, 'Also time localization (regressor + merge).')
_LOC_BATCH = flags.DEFINE_integer('localize_batch', 8, 'Images per localization call.')
_MERGE = flags.DEFINE_enum('merge', 'overlap', ['overlap', 'literal', 'nms'], 'Box merging method.')
_THRESHOLD = flags.DEFINE_float('threshold', 0.8, 'Merge threshold t (IoU threshold for nms).')
_TOP_K = flags.DEFINE_integer('top_k', 1, 'Classes per scale whose boxes are merged (paper step (a)).')
_PEAK = flags.DEFINE_float('peak_tflops', 796.0, 'Dense matrix peak of the device (H100 SXM bf16: 796).')

DTYPES = build.DTYPES  # the compute dtypes, by name


def parse_scales(values: Sequence[str]) -> tuple[tuple[int, int], ...]:
  """['paper'] -> PAPER_SCALES; ['245x245', '281x317'] -> ((245, 245), (281, 317))."""
  if list(values) == ['paper']:
    return PAPER_SCALES
  try:
    return tuple(tuple(int(v) for v in s.lower().split('x')) for s in values)
  except ValueError:
    raise InputError(f"--scales must be 'paper' or sizes like 245x245, got {values}") from None


def folded_offset_pool(unpooled: jax.Array, k: int) -> jax.Array:
  """Same maps as `dense.offset_pool`, cut with static slices (no gather): [k*k, B, H//k, W//k, C]."""
  _, height, width, _ = unpooled.shape
  h, w = height // k, width // k
  padded = jnp.pad(unpooled, ((0, 0), (0, k - 1), (0, k - 1), (0, 0)))
  maps = [max_pool(padded[:, dy:dy + h * k, dx:dx + w * k], k) for dy in range(k) for dx in range(k)]
  return jnp.stack(maps)


def gathered_offset_pool(unpooled: jax.Array, k: int) -> jax.Array:
  """The library's former `offset_pool`: a vmap over traced offsets of dynamic slices (XLA: two gathers)."""
  _, height, width, _ = unpooled.shape
  h, w = height // k, width // k
  padded = jnp.pad(unpooled, ((0, 0), (0, k - 1), (0, k - 1), (0, 0)))

  def pool_at(oy, ox):
    window = jax.lax.dynamic_slice_in_dim(padded, oy, h * k, axis=1)
    return max_pool(jax.lax.dynamic_slice_in_dim(window, ox, w * k, axis=2), k)

  return jax.vmap(pool_at)(*jnp.divmod(jnp.arange(k * k), k))


def dense_scores_gathered(model: OverFeat, params, images: jax.Array) -> jax.Array:
  """Fine-stride class scores as the library computed them before static slices (for comparison)."""
  variables = {'params': params}
  unpooled = model.apply(variables, images, method=model.unpooled)
  head = lambda pooled: model.apply(variables, pooled, method=model.head)
  k = model.geometry.offset_pool
  maps = jax.vmap(head)(gathered_offset_pool(unpooled, k))
  lengths = tuple(dense.fine_length(unpooled.shape[1 + a], maps.shape[2 + a], k) for a in range(2))
  return dense.interleave(maps, k, lengths)


def dense_scores_folded(model: OverFeat, params, images: jax.Array) -> jax.Array:
  """Fine-stride class scores with the k*k offsets folded into the batch: one head call on [k*k*B, ...]."""
  variables = {'params': params}
  unpooled = model.apply(variables, images, method=model.unpooled)  # [B, H5, W5, C5]
  k, batch = model.geometry.offset_pool, images.shape[0]
  pooled = folded_offset_pool(unpooled, k)  # [k*k, B, h, w, C5]
  scores = model.apply(variables, pooled.reshape((k * k * batch,) + pooled.shape[2:]), method=model.head)
  maps = scores.reshape((k * k, batch) + scores.shape[1:])  # [k*k, B, h', w', C]
  lengths = tuple(dense.fine_length(unpooled.shape[1 + a], maps.shape[2 + a], k) for a in range(2))
  return dense.interleave(maps, k, lengths)


# How the k*k offsets are batched: the library's `dense_scores` (static slices, vmap of the head), the same
# folded into the batch by hand, and the library's former gather-based offset pooling.
VARIANTS = {'vmap': lambda m, p, x: dense.dense_scores(m, p, x, fine=True), 'fold': dense_scores_folded,
            'gather': dense_scores_gathered}


def classify_fn(model: OverFeat, variant: str, scales, flips: bool) -> Callable:
  """Jitted `fn(params, images) -> [B, C]`: per-class spatial max, averaged over scales and flips."""
  if variant not in VARIANTS:
    raise InputError(f'--variants must be among {sorted(VARIANTS)}, got {variant!r}')

  def scores(params, images):
    return VARIANTS[variant](model, params, images)

  @jax.jit
  def classify(params, images):
    vectors = [spatial_max(scores(params, resize_images(images, s, f)))
               for s in scales for f in ((False, True) if flips else (False,))]
    return jnp.mean(jnp.stack(vectors), axis=0)

  return classify


def dense_gflop(geometry, scales, flips: bool, num_classes: int) -> float:
  """GFLOP per image: layers 1-5 once per scale and flip, the classifier once per fine-map cell."""
  heads = geometry.fc_names()
  per_cell = sum(v for n, v in geometry.multiply_adds(geometry.input_size, geometry.input_size,
                                                      num_classes).items() if n in heads)
  total = 0.0
  for h, w in scales:
    features = sum(v for n, v in geometry.multiply_adds(h, w, num_classes).items() if n not in heads)
    cells = geometry.output_size(h, fine=True) * geometry.output_size(w, fine=True)
    total += (2 if flips else 1) * 2 * (features + cells * per_cell)
  return total / 1e9


def time_calls(fn: Callable, args: tuple, steps: int) -> tuple[float, float]:
  """(first call incl. compile, median seconds of `steps` later calls), each blocked until ready."""
  t0 = time.perf_counter()
  jax.block_until_ready(fn(*args))
  first = time.perf_counter() - t0
  runs = []
  for _ in range(max(steps, 1)):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    runs.append(time.perf_counter() - t0)
  return first, statistics.median(runs)


def peak_bytes(compiled) -> int | None:
  """Arguments + outputs + temporaries - aliased bytes of a compiled program (None if not reported)."""
  m = compiled.memory_analysis()
  if m is None:
    return None
  return (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
          - m.alias_size_in_bytes)


def device_limit_bytes() -> int | None:
  """The memory to fit into: `--memory_limit_gb`, else the device's own `bytes_limit` (GPU/TPU)."""
  if _MEM_LIMIT.value > 0:
    return int(_MEM_LIMIT.value * 2**30)
  stats = jax.devices()[0].memory_stats()
  return stats.get('bytes_limit') if stats else None


def environment_lines() -> list[str]:
  d = jax.devices()[0]
  return [f'date: {datetime.datetime.now().isoformat(timespec="seconds")}',
          f'device: {d.platform} {d.device_kind} x{jax.device_count()}; host {platform.machine()} '
          f'{platform.processor() or ""}',
          f'versions: jax {jax.__version__}, python {platform.python_version()}']


def make_model(dtype_name: str) -> tuple[OverFeat, dict]:
  """The configured network in `dtype_name` compute and its (float32) parameters."""
  model = build.classifier(_GEOMETRY.value, _DIVISOR.value, _CLASSES.value, dtype=dtype_name)
  return model, init_params(model, jax.random.key(0))


def test_images(batch: int) -> jax.Array:
  """Random uint8 pictures [B, S, S, 3] already on the device (speed does not depend on their content)."""
  rng = np.random.default_rng(0)
  return jnp.asarray(rng.integers(0, 256, (batch, _INPUT.value, _INPUT.value, 3), np.uint8))


def throughput_row(model, params, variant: str, dtype_name: str, scales, gflop: float) -> str:
  """One markdown row: variant, dtype, batch, compile, ms per batch, img/s, TFLOP/s, % of peak."""
  fn = classify_fn(model, variant, scales, _FLIPS.value)
  batch = _BATCH.value
  first, seconds = time_calls(fn, (params, test_images(batch)), _STEPS.value)
  rate = batch / seconds
  tflops = rate * gflop / 1e3
  return (f'| {variant} | {dtype_name} | {batch} | {first:.1f} | {seconds * 1e3:.1f} | {rate:.1f} | '
          f'{tflops:.2f} | {100 * tflops / _PEAK.value:.1f} |')


def compile_for(fn, params, batch: int):
  images = jax.ShapeDtypeStruct((batch, _INPUT.value, _INPUT.value, 3), jnp.uint8)
  return fn.lower(params, images).compile()


def search_batch(fn, params, limit: int, cap: int) -> tuple[int, dict[int, int]]:
  """Largest batch (a power of two, then bisected) whose compiled peak bytes fit `limit`; {batch: bytes}."""
  peaks, lo, hi, b = {}, 0, None, 1
  while b <= cap:
    peaks[b] = peak_bytes(compile_for(fn, params, b))
    if peaks[b] > limit:
      hi = b
      break
    lo, b = b, b * 2
  hi = hi or cap + 1
  while hi - lo > max(1, lo // 16):  # bisect to within ~6%
    mid = (lo + hi) // 2
    peaks[mid] = peak_bytes(compile_for(fn, params, mid))
    lo, hi = (mid, hi) if peaks[mid] <= limit else (lo, mid)
  return lo, peaks


def run_largest(fn, params, batch: int) -> tuple[int, float]:
  """Runs `batch` for real, stepping down 10% at a time on out-of-memory; (batch that ran, img/s)."""
  while batch >= 1:
    try:
      compiled = compile_for(fn, params, batch)
      _, seconds = time_calls(compiled, (params, test_images(batch)), max(2, _STEPS.value // 2))
      return batch, batch / seconds
    except jax.errors.JaxRuntimeError as e:
      if 'RESOURCE_EXHAUSTED' not in str(e) and 'out of memory' not in str(e).lower():
        raise
      batch = int(batch * 0.9)
  raise InputError('not even one image fits the device memory')


def max_batch_lines(model, params, variant: str, dtype_name: str, scales) -> list[str]:
  """The largest batch that fits, its measured img/s and the memory per image (slope of peak vs batch)."""
  limit = device_limit_bytes()
  if limit is None:
    return [f'max batch ({variant}, {dtype_name}): skipped, no device memory limit (use --memory_limit_gb)']
  fn = classify_fn(model, variant, scales, _FLIPS.value)
  predicted, peaks = search_batch(fn, params, limit, _MAX_CAP.value)
  if predicted < 1:
    return [f'max batch ({variant}, {dtype_name}): even batch 1 needs {peaks[1] / 2**30:.2f} GiB']
  ran, rate = run_largest(fn, params, predicted)
  fitting = sorted(b for b, v in peaks.items() if v <= limit)
  b1, b2 = (fitting[0], fitting[-1]) if len(fitting) > 1 else (None, None)
  per_image = (peaks[b2] - peaks[b1]) / (b2 - b1) if b1 is not None else peaks[predicted] / predicted
  return [f'max batch ({variant}, {dtype_name}): predicted {predicted}, ran {ran} at {rate:.1f} img/s; '
          f'limit {limit / 2**30:.2f} GiB, peak {peaks[predicted] / 2**30:.2f} GiB, '
          f'memory per image {per_image / 2**20:.1f} MiB',
          'peak bytes by batch: ' + ', '.join(f'{b}: {v / 2**20:.0f} MiB' for b, v in sorted(peaks.items()))]


def box_model(model: OverFeat, params) -> tuple[localize_lib.BoxModel, dict]:
  """The classifier plus a single-class box regressor (random weights: timing does not need trained ones)."""
  g = model.geometry
  regressor = BoxRegressor(g, num_outputs=1, dtype=model.dtype)
  pooled = jnp.zeros((1, g.fc_kernel, g.fc_kernel, g.layer5_channels), jnp.float32)
  reg_params = regressor.init(jax.random.key(1), pooled)['params']
  return localize_lib.BoxModel(model, regressor), {'backbone': params, 'regressor': reg_params}


def localization_lines(model, params, dtype_name: str, scales) -> list[str]:
  """Dense boxes alone, merge alone, and the whole localization: the merge's share of the time."""
  bm, p = box_model(model, params)
  top_k = _TOP_K.value
  method, threshold = _MERGE.value, _THRESHOLD.value
  dense_fn = jax.jit(lambda p, x: localize_lib.concat(
      [localize_lib.scale_candidates(bm, p, x, s, top_k=top_k) for s in scales]))
  merge_fn = jax.jit(lambda c: localize_lib.top_guesses(
      localize_lib.merge_candidates(c, method=method, threshold=threshold), 5))
  full_fn = localize_lib.make_localizer(bm, scales=scales, top_k=top_k, method=method, threshold=threshold)
  images = test_images(_LOC_BATCH.value)
  _, t_dense = time_calls(dense_fn, (p, images), _STEPS.value)
  candidates = dense_fn(p, images)
  _, t_merge = time_calls(merge_fn, (candidates,), _STEPS.value)
  _, t_full = time_calls(full_fn, (p, images), _STEPS.value)
  batch, n = candidates.boxes.shape[:2]
  return [f'localization ({dtype_name}, {method} t={threshold}, top_k={top_k}, {n} boxes per image, batch '
          f'{batch}): dense {t_dense * 1e3:.1f} ms, merge {t_merge * 1e3:.1f} ms, '
          f'whole {t_full * 1e3:.1f} ms '
          f'= {batch / t_full:.1f} img/s; merge share {100 * t_merge / t_full:.1f}% (alone), '
          f'{100 * max(t_full - t_dense, 0.0) / t_full:.1f}% (whole - dense)']


def main(argv: list[str]) -> None:
  del argv
  scales = parse_scales(_SCALES.value)
  for name in _DTYPES.value:
    if name not in DTYPES:
      raise InputError(f'--dtypes must be among {sorted(DTYPES)}, got {name!r}')
  geometry = get_geometry(_GEOMETRY.value, _DIVISOR.value)
  gflop = dense_gflop(geometry, scales, _FLIPS.value, _CLASSES.value)
  print('\n'.join(environment_lines()))
  print(f'network: {geometry.name} (width / {_DIVISOR.value}), {_CLASSES.value} classes; input '
        f'{_INPUT.value}x{_INPUT.value}; scales {scales}; flips {_FLIPS.value}; '
        f'{geometry.offset_pool ** 2} offsets; {gflop:.2f} GFLOP/img')
  ceiling = _PEAK.value * 1e3 / gflop
  print(f'ceiling at {_PEAK.value:.0f} TFLOP/s: {ceiling:,.1f} img/s')
  print('| variant | dtype | batch | first call s | ms/batch | img/s | TFLOP/s | % of peak |')
  print('|---|---|---|---|---|---|---|---|')
  extra = []
  for name in _DTYPES.value:
    model, params = make_model(name)
    for variant in _VARIANTS.value:
      print(throughput_row(model, params, variant, name, scales, gflop), flush=True)
      if _MAX_BATCH.value:
        extra += max_batch_lines(model, params, variant, name, scales)
    if _LOCALIZE.value:
      extra += localization_lines(model, params, name, scales)
  print('\n'.join(extra))


if __name__ == '__main__':
  cli.run(main)
