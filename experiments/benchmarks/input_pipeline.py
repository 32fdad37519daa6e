"""Training input throughput per CPU core: JPEG decode, resize, random crop, flip, batching.

Generates its own ImageNet-like JPEGs (500x375, quality 90, 4:2:0, multi-octave textures with the entropy of
photographs: ~75 KB each) and their 256-smaller-side re-encodings (341x256) made by the builders' own
`images.encode_for_storage`, as the ImageNet builder's resized256 config stores them (quality
`images.JPEG_QUALITY` = 95: ~51 KB; `--stored_quality` for another), then times each stage in this process.
Pin it to one core for per-core figures:

  taskset -c 0 .venv/bin/python experiments/benchmarks/input_pipeline.py --num_images=300 --seconds=3
  .venv/bin/python experiments/benchmarks/input_pipeline.py --worker_counts=1,2   # + scaling over workers

Rows: decode alone (Pillow, and libjpeg-turbo through simplejpeg); the reference path (decode, resize smaller
side to 256, random 231 crop, flip); the
project's fused path (`preprocess.crop_image`: DCT-domain `draft` + crop-only resize, or a plain crop when
stored at 256); full examples (boxes, padding) stacked into batches of 128; and the whole
`pipeline.train_iterator` (grain) over an in-memory source of records, in this process and with each of
`--worker_counts` grain worker processes (images per CPU-second then add the workers' CPU time, read from
/proc). The last line turns the in-process per-core rate into the cores that feed 16,000 and 30,000 img/s; with
`--worker_counts`, one more line does the same at the largest worker count's rate (workers + trainer process)."""

import io
import math
import os
import time
from typing import Callable, Sequence

import numpy as np
from absl import flags
from PIL import Image
import simplejpeg

import cpu_time
from overfeat_jax import cli
from overfeat_jax.data import images
from overfeat_jax.data import pipeline
from overfeat_jax.data import preprocess as pp

FLAGS = flags.FLAGS
flags.DEFINE_integer('num_images', 300, 'Distinct JPEGs to generate.')
flags.DEFINE_float('seconds', 3.0, 'Minimum time per measurement.')
flags.DEFINE_integer('crop_size', 231, 'Training crop (231 fast, 221 accurate).')
flags.DEFINE_integer('stored_quality', images.JPEG_QUALITY, 'JPEG quality of the stored 341x256 records '
                     '(the builders re-encode at images.JPEG_QUALITY).')
flags.DEFINE_list('worker_counts', [], 'grain worker processes to time the iterator with (scaling), e.g. 1,2.')
flags.DEFINE_list('feed_rates', ['16000', '30000'], 'img/s to size the host cores for (last line).')
# Host CPU counts to compare with (vendor datasheets): NVIDIA DGX H100, 2x Xeon 8480C = 112 cores (224 threads);
# Cloud TPU v5p host (4 chips): 208 vCPUs, half of them when bound to one NUMA node.
HOSTS = (('8-GPU DGX H100 host', '112 cores / 224 threads'), ('TPU v5p host (4 chips)', '208 vCPUs (~104 cores)'))


def natural_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
  """A photo-like texture: noise at four octaves (1/f-ish spectrum) plus sensor noise, uint8 `[h, w, 3]`."""
  img = np.zeros((height, width, 3), np.float32)
  for rows, amp in ((4, 60), (16, 40), (64, 25), (256, 12)):
    coarse = rng.normal(0, amp, (rows, rows * width // height, 3)) + 128
    layer = Image.fromarray(np.uint8(np.clip(coarse, 0, 255))).resize((width, height), Image.BICUBIC)
    img += np.asarray(layer, np.float32) - 128
  img += rng.normal(0, 4, img.shape)
  return np.uint8(np.clip(img + 128, 0, 255))


def encode(image: np.ndarray, quality: int = 90) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format='jpeg', quality=quality)
  return buf.getvalue()


def make_jpegs(count: int, seed: int = 0, stored_quality: int = images.JPEG_QUALITY
               ) -> tuple[list[bytes], list[bytes]]:
  """`count` distinct 500x375 JPEGs and their 341x256 (smaller side 256) re-encodings as the builders store them
  (`images.encode_for_storage`, at `stored_quality`)."""
  rng = np.random.default_rng(seed)
  full, small = [], []
  for _ in range(count):
    full.append(encode(natural_image(rng, 375, 500)))
    small.append(images.encode_for_storage(images.decode(full[-1]), smaller_side=256,
                                           quality=stored_quality).data)
  return full, small


def rate(fn: Callable[[int, bytes], object], items: Sequence[bytes], seconds: float) -> tuple[float, float]:
  """(images per wall second, images per CPU second) of `fn(i, item)`, repeated for `seconds` of CPU time.

  CPU time (this process, all threads) is the per-core cost even when other jobs share the core; wall time is
  what this process saw.
  """
  for i, item in enumerate(items[:10]):
    fn(i, item)
  done, wall, cpu = 0, time.perf_counter(), time.process_time()
  while time.process_time() - cpu < seconds:
    for i, item in enumerate(items):
      fn(done + i, item)
    done += len(items)
  return done / (time.perf_counter() - wall), done / (time.process_time() - cpu)


def decode_only(_: int, data: bytes) -> np.ndarray:
  return np.asarray(Image.open(io.BytesIO(data)).convert('RGB'))


def decode_turbo(_: int, data: bytes) -> np.ndarray:
  return simplejpeg.decode_jpeg(data, 'RGB')


def reference(i: int, data: bytes, crop: int) -> np.ndarray:
  """The plain path: full decode, resize (smaller side 256, bilinear), random crop, flip."""
  rng = pp.example_rng(0, 0, i)
  im = Image.open(io.BytesIO(data)).convert('RGB')
  w, h = im.size
  s = 256 / min(w, h)
  im = im.resize((round(w * s), round(h * s)), Image.BILINEAR)
  x0, y0 = int(rng.integers(0, im.size[0] - crop + 1)), int(rng.integers(0, im.size[1] - crop + 1))
  out = np.asarray(im)[y0:y0 + crop, x0:x0 + crop]
  return np.ascontiguousarray(out[:, ::-1] if rng.random() < 0.5 else out)


def fused(i: int, data: bytes, crop: int) -> np.ndarray:
  rng = pp.example_rng(0, 0, i)
  image, _ = pp.crop_image(data, lambda h, w: pp.train_crop(rng, h, w, crop_size=crop, resize_smaller=256))
  return np.ascontiguousarray(image)


class Batched:
  """Full training examples (crop, flip, boxes, padding) stacked into batches of 128."""

  def __init__(self, crop: int, batch: int = 128):
    self.crop, self.batch, self.pending, self.last = crop, batch, [], None

  def __call__(self, i: int, data: bytes) -> None:
    record = {'image': data, 'label': 1, 'boxes': np.array([[50, 40, 300, 200]], np.float32),
              'box_labels': np.array([1])}
    self.pending.append(pp.train_example(record, pp.example_rng(0, 0, i), crop_size=self.crop,
                                         resize_smaller=256, max_boxes=4))
    if len(self.pending) == self.batch:
      self.last = {k: np.stack([ex[k] for ex in self.pending]) for k in self.pending[0]}
      self.pending = []


class RecordSource:
  """In-memory records (JPEG bytes + one box), standing in for a tfds source (its read cost is not timed)."""

  def __init__(self, jpegs: Sequence[bytes]):
    self._jpegs = jpegs

  def __len__(self) -> int:
    return len(self._jpegs)

  def __getitem__(self, i: int) -> dict:
    return {'image': self._jpegs[i], 'label': 1, 'boxes': np.array([[50, 40, 300, 200]], np.float32),
            'box_labels': np.array([1])}


def grain_rate(jpegs: Sequence[bytes], crop: int, seconds: float, workers: int = 0) -> tuple[float, float]:
  """(images per wall second, images per CPU-second of this process and its workers) of the whole iterator.

  Runs until `seconds` of CPU time (in process) or of wall time (with workers, whose CPU is read from /proc).
  """
  it = pipeline.train_iterator(RecordSource(jpegs), global_batch_size=128, crop_size=crop, resize_smaller=256,
                               max_boxes=4, seed=0, shard_index=0, shard_count=1, worker_count=workers)
  for _ in range(1 + 2 * workers):  # the workers' first batches (start-up) are not timed
    next(it)
  done, wall, cpu = 0, time.perf_counter(), cpu_time.tree_cpu_seconds()
  clock = time.process_time if workers == 0 else time.perf_counter
  start = clock()
  while clock() - start < seconds:
    done += len(next(it)['image'])
  wall, cpu = time.perf_counter() - wall, cpu_time.tree_cpu_seconds() - cpu
  it.close()
  return done / wall, done / cpu


def cores_line(per_core: float, rates: Sequence[int]) -> str:
  """How many cores at `per_core` images per CPU-second feed each of `rates`, next to typical hosts."""
  need = ', '.join(f'{r:,} img/s needs {math.ceil(r / per_core)} cores' for r in rates)
  hosts = '; '.join(f'{name}: {cores}' for name, cores in HOSTS)
  return f'at {per_core:,.0f} images per CPU-second per core: {need} (for comparison, {hosts})'


def main(argv: list[str]) -> None:
  del argv
  crop, secs = FLAGS.crop_size, FLAGS.seconds
  t = time.perf_counter()
  full, small = make_jpegs(FLAGS.num_images, stored_quality=FLAGS.stored_quality)
  kb_full, kb_small = (np.mean([len(x) for x in jpegs]) / 1024 for jpegs in (full, small))
  print(f'generated {len(full)} JPEGs in {time.perf_counter() - t:.1f} s: 500x375 mean {kb_full:.1f} KB, '
        f'341x256 (quality {FLAGS.stored_quality}) mean {kb_small:.1f} KB')
  rows = [
      ('decode only, 500x375', lambda: rate(decode_only, full, secs)),
      (f'reference: decode + resize 256 + crop {crop} + flip, 500x375', lambda: rate(
          lambda i, d: reference(i, d, crop), full, secs)),
      ('fused (draft + crop-only resize), 500x375', lambda: rate(lambda i, d: fused(i, d, crop), full, secs)),
      ('decode only, stored 341x256', lambda: rate(decode_only, small, secs)),
      ('decode only (simplejpeg), stored 341x256', lambda: rate(decode_turbo, small, secs)),
      ('reference, stored 341x256', lambda: rate(lambda i, d: reference(i, d, crop), small, secs)),
      ('fused (plain crop), stored 341x256', lambda: rate(lambda i, d: fused(i, d, crop), small, secs)),
      ('full examples + batches of 128, stored 341x256', lambda: rate(Batched(crop), small, secs)),
      ('pipeline.train_iterator (grain), stored 341x256', lambda: grain_rate(small, crop, secs)),
      ('pipeline.train_iterator (grain), 500x375', lambda: grain_rate(full, crop, secs)),
  ]
  rows += [(f'pipeline.train_iterator, {w} worker process{"es" * (int(w) > 1)}, stored 341x256',
            lambda w=int(w): grain_rate(small, crop, secs, w)) for w in FLAGS.worker_counts]
  print(f'load average before: {os.getloadavg()[0]:.2f}; cores usable: {pipeline.usable_cores()}')
  print('| path | images/s (wall) | images per CPU-second (per core) |\n|---|---|---|')
  results = {}
  for name, measure in rows:
    results[name] = measure()
    print(f'| {name} | {results[name][0]:.0f} | {results[name][1]:.0f} |', flush=True)
  print(f'load average after: {os.getloadavg()[0]:.2f}')
  per_core = results['pipeline.train_iterator (grain), stored 341x256'][1]
  feed_rates = [int(r) for r in FLAGS.feed_rates]
  print(cores_line(per_core, feed_rates))
  if FLAGS.worker_counts:  # how a GPU host feeds: workers, whose rate counts the trainer's share too
    workers = max(FLAGS.worker_counts, key=int)
    name = f'pipeline.train_iterator, {workers} worker process{"es" * (int(workers) > 1)}, stored 341x256'
    print(f'with {workers} worker process{"es" * (int(workers) > 1)} (CPU of the workers and this process): '
          + cores_line(results[name][1], feed_rates))


if __name__ == '__main__':
  cli.run(main)
