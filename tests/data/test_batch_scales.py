"""One multi-scale training mechanism (issue #16 item 4): the input pipeline resizes each whole batch to its
step's `box.train_scales` size (`preprocess.scale_of_batch`), instead of the loop's prefetcher doing it with a
step counter (`loop.BATCH_TRANSFORMS` + `localization.make_batch_transform`, removed 2026-11-30).

The oracle below is that removed host transform, kept verbatim (its resize and its step -> scale rule): the
batches the localization and detection stages train on must stay the same pixels, boxes and schedule, also
after a resume and when one process reads as several hosts."""

import itertools

import numpy as np
import pytest

from overfeat_jax.data import images as images_lib
from overfeat_jax.data import pipeline, preprocess
from overfeat_jax.errors import InputError
from tests.record_list import RecordList

SCALES = ((16, 16), (20, 28), (32, 32))  # a shrink, a non-square enlargement, an enlargement
TRAIN = dict(crop_size=24, max_boxes=3, seed=7, global_batch_size=4)


class BoxSource(RecordList):
  """Random images with 1-3 boxes each, some near the border (so the crop rule drops or clips them)."""

  def __init__(self, n: int = 13):
    rng = np.random.default_rng(3)
    self._records = []
    for i in range(n):
      h, w = int(rng.integers(26, 40)), int(rng.integers(26, 40))
      k = int(rng.integers(1, 4))
      x1, y1 = rng.uniform(0, w - 6, k), rng.uniform(0, h - 6, k)
      boxes = np.stack([x1, y1, np.minimum(x1 + rng.uniform(4, 20, k), w),
                        np.minimum(y1 + rng.uniform(4, 20, k), h)], 1).astype(np.float32)
      self._records.append({'image': rng.integers(0, 256, (h, w, 3), dtype=np.uint8), 'label': i,
                            'boxes': boxes, 'box_labels': rng.integers(0, 5, k)})


def old_transform(batch: dict, step: int) -> dict:
  """The removed `localization.make_batch_transform(settings)(batch, step)` (resize_batch + scale_of_step)."""
  size = tuple(SCALES[(step - 1) % len(SCALES)])
  images = np.asarray(batch['image'])
  height, width = images.shape[1:3]
  if (height, width) == size:
    return batch
  resized = np.stack([images_lib.resize(im, size) for im in images])
  scale = np.asarray([size[1] / width, size[0] / height] * 2, np.float32)
  return {**batch, 'image': resized, 'boxes': (np.asarray(batch['boxes'], np.float32) * scale)}


def assert_same(new: dict, old: dict) -> None:
  assert set(new) == set(old)
  for key in old:
    assert new[key].dtype == old[key].dtype and new[key].shape == old[key].shape, key
    np.testing.assert_array_equal(new[key], old[key], err_msg=key)


def take(iterator, n: int) -> list[dict]:
  return [{k: np.array(v) for k, v in b.items()} for b in itertools.islice(iterator, n)]


@pytest.mark.parametrize('jitter', [None, (26, 34)])
def test_pipeline_batches_equal_the_old_per_step_host_resize(jitter):
  source = BoxSource()
  old = take(pipeline.train_iterator(source, resize_smaller=jitter, **TRAIN), 7)
  new = take(pipeline.train_iterator(source, resize_smaller=jitter, train_scales=SCALES, **TRAIN), 7)
  for step, (n, o) in enumerate(zip(new, old), start=1):
    assert_same(n, old_transform(o, step))
  assert [b['image'].shape[1:3] for b in new] == list(SCALES) * 2 + [SCALES[0]]
  assert any((b['box_labels'] >= 0).sum() for b in new)  # boxes survive the crops, so their scaling is tested


@pytest.mark.parametrize('workers', [0, 1])
def test_a_resumed_iterator_continues_the_schedule(workers):
  """Restored at step k (the loop's resume), batch k + 1 trains at scale k mod n, as the old counter did."""
  source = BoxSource()
  old = take(pipeline.train_iterator(source, resize_smaller=None, **TRAIN), 8)
  first = pipeline.train_iterator(source, resize_smaller=None, train_scales=SCALES, worker_count=workers, **TRAIN)
  take(first, 4)
  state = first.get_state()
  first.close()
  resumed = pipeline.train_iterator(source, resize_smaller=None, train_scales=SCALES, worker_count=workers,
                                    **TRAIN)
  resumed.set_state(state)
  for step, batch in enumerate(take(resumed, 4), start=5):
    assert_same(batch, old_transform(old[step - 1], step))
  resumed.close()


def test_every_host_trains_each_step_at_the_same_scale():
  """Read as 2 hosts (`read_as_hosts`), each shard's batch b has scale b mod n, so the global batch is the old
  global batch resized (the concatenation would fail on different sizes); also after a resume."""
  source = BoxSource()
  old = take(pipeline.hosts_train_iterator(source, num_hosts=2, resize_smaller=None, **TRAIN), 5)
  hosts = pipeline.hosts_train_iterator(source, num_hosts=2, resize_smaller=None, train_scales=SCALES, **TRAIN)
  take(hosts, 2)
  resumed = pipeline.hosts_train_iterator(source, num_hosts=2, resize_smaller=None, train_scales=SCALES, **TRAIN)
  resumed.set_state(hosts.get_state())
  for step, batch in enumerate(take(resumed, 3), start=3):
    assert_same(batch, old_transform(old[step - 1], step))


def test_scale_of_batch_cycles_and_bad_scales_are_refused():
  assert [preprocess.scale_of_batch(SCALES, b) for b in range(4)] == [*SCALES, SCALES[0]]
  assert preprocess.scale_of_batch((), 5) is None
  for bad in ((0,), ((16, 16, 3),), ('x',)):
    with pytest.raises(InputError, match='train_scales'):
      pipeline.train_iterator(BoxSource(), resize_smaller=None, train_scales=bad, **TRAIN)
