r"""Speed of the jitted greedy box merge vs the sequential Python reference, and of the jitted NMS.

Synthetic box sets like the regressor's output: N boxes scattered around N / 25 objects (centre noise 8 px,
size noise +-20%), 5 classes. For each N: the jitted merge's first call (trace + compile + run) and its
steady-state run time (median of `--repeats`), the number of merges, and the Python reference, which is
O(N^3): it runs to the end when it fits `--reference_budget_s`, else only its first merges (`max_merges`,
grown until the budget is spent) and the table says how many merges that time covers. Where the reference
finished, its merge sequence is checked to be identical to the jitted one.

  PYTHONPATH=. JAX_PLATFORMS=cpu python experiments/benchmarks/box_merge.py [--sizes=100,500,2000,5000] \
      [--score_fn=overlap --threshold=0.6 | --score_fn=literal --threshold=50]
"""

import platform
import statistics
import time

from absl import app
from absl import flags
import jax
import numpy as np

from overfeat_jax import cli
from overfeat_jax.inference import merge
from overfeat_jax.inference import nms
from tests.inference.merge_reference import merge_boxes_reference

_SIZES = flags.DEFINE_list('sizes', ['100', '500', '2000', '5000'], 'Numbers of boxes N.')
_SCORE_FN = flags.DEFINE_enum('score_fn', 'overlap', sorted(merge.SCORE_FUNCTIONS), 'Match score.')
_AVERAGE = flags.DEFINE_enum('average', 'pair', list(merge.AVERAGES), "Merged box: 'pair' mean or 'score'-weighted.")
_THRESHOLD = flags.DEFINE_float('threshold', 0.6, 'Merge threshold t (0.6 for overlap; ~50 for literal).')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed runs of the jitted functions after the first call.')
_BUDGET = flags.DEFINE_float('reference_budget_s', 60.0, 'Seconds allowed to the Python reference per N.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the synthetic box sets.')


def synthetic_boxes(n: int, rng: np.random.Generator):
  """N boxes around N / 25 objects, as (boxes [N, 4], scores [N], classes [N], valid [N])."""
  k = max(n // 25, 1)
  centres, sizes = rng.uniform(50, 450, (k, 2)), rng.uniform(30, 200, (k, 2))
  obj = rng.integers(0, k, n)
  c = centres[obj] + rng.normal(0, 8, (n, 2))
  s = sizes[obj] * rng.uniform(0.8, 1.2, (n, 2))
  boxes = np.concatenate([c - s / 2, c + s / 2], 1).astype(np.float32)
  return boxes, rng.uniform(0, 1, n).astype(np.float32), (obj % 5).astype(np.int32), np.ones(n, bool)


def _time(fn, repeats: int):
  t0 = time.perf_counter()
  out = jax.block_until_ready(fn())
  first = time.perf_counter() - t0
  runs = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    runs.append(time.perf_counter() - t0)
  return out, first, statistics.median(runs)


def _time_reference(args, budget_s: float):
  """Runs the reference to the end if it fits the budget, else the longest prefix of merges that does."""
  limit, spent, result = 1, 0.0, None
  while spent < budget_s / 4:
    t0 = time.perf_counter()
    result = merge_boxes_reference(*args, threshold=_THRESHOLD.value, score_fn=_SCORE_FN.value,
                                   average=_AVERAGE.value, max_merges=limit)
    spent = time.perf_counter() - t0
    if len(result.pairs) < limit:  # finished before the limit: a complete run
      return result, spent, True
    limit *= 4
  return result, spent, False


def bench_one(n: int, rng: np.random.Generator) -> dict:
  boxes, scores, classes, valid = synthetic_boxes(n, rng)
  run = lambda: merge.merge_boxes(boxes, scores, classes, valid, threshold=_THRESHOLD.value,
                                  score_fn=_SCORE_FN.value, average=_AVERAGE.value)
  got, first, steady = _time(run, _REPEATS.value)
  _, nms_first, nms_steady = _time(lambda: nms.nms(boxes, scores, classes, valid, iou_threshold=0.5),
                                   _REPEATS.value)
  ref, ref_s, complete = _time_reference((boxes, scores, classes, valid), _BUDGET.value)
  merges = int(got.num_merges)
  jit_pairs = [tuple(int(v) for v in p) for p in np.asarray(got.pairs)[:merges]]
  same = jit_pairs[: len(ref.pairs)] == ref.pairs and (not complete or len(ref.pairs) == merges)
  return dict(n=n, merges=merges, first=first, steady=steady, nms_first=nms_first, nms_steady=nms_steady,
              ref_s=ref_s, ref_merges=len(ref.pairs), complete=complete, same=same)


def print_table(rows) -> None:
  print(f'\nscore_fn={_SCORE_FN.value} average={_AVERAGE.value} threshold={_THRESHOLD.value} '
        f'backend={jax.default_backend()} '
        f'jax={jax.__version__} numpy={np.__version__} python={platform.python_version()}')
  print('| N | merges | jit first call s | jit run s | ms / merge (jit) | reference s (merges timed) '
        '| ms / merge (reference) | speed-up (whole merge) | same sequence | NMS first s | NMS run s |')
  print('|---|---|---|---|---|---|---|---|---|---|---|')
  for r in rows:
    jit_ms = 1e3 * r['steady'] / max(r['merges'], 1)
    ref_ms = 1e3 * r['ref_s'] / max(r['ref_merges'], 1)
    done = 'all' if r['complete'] else f"first {r['ref_merges']}"
    speed_up = f"{r['ref_s'] / r['steady']:,.0f}x" if r['complete'] else 'n/a (reference not finished)'
    print(f"| {r['n']} | {r['merges']} | {r['first']:.3f} | {r['steady']:.4f} | {jit_ms:.3f} | "
          f"{r['ref_s']:.2f} ({done}) | {ref_ms:.2f} | {speed_up} | {r['same']} | "
          f"{r['nms_first']:.3f} | {r['nms_steady']:.4f} |")


def main(argv):
  del argv
  sizes = [int(s) for s in _SIZES.value]
  jax.devices()  # initialise the backend outside the timed first call
  rng = np.random.default_rng(_SEED.value)
  print_table([bench_one(n, rng) for n in sizes])


if __name__ == '__main__':
  cli.run(main)
