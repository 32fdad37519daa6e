"""Tests of the host preprocessing: crop/flip geometry with hand-worked boxes, the drop rule, eval views."""

import io

import numpy as np
import pytest
from PIL import Image

from overfeat_jax.data import preprocess as pp
from overfeat_jax.errors import InputError

# A 100 x 200 (h x w) image resized to smaller side 50 (scale 0.5) and cropped 40 x 40 at (x0, y0) = (30, 5).
CROP = pp.Crop(sx=0.5, sy=0.5, x0=30, y0=5, w=40, h=40)


def _jpeg(image: np.ndarray, **kw) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format='jpeg', quality=95, **kw)
  return buf.getvalue()


def test_box_follows_crop_and_flip_hand_worked():
  box = np.array([[80, 20, 140, 60]], np.float32)  # Scaled (40, 10, 70, 30), minus offset: (10, 5, 40, 25).
  out, labels = pp.transform_boxes(box, np.array([7]), CROP)
  np.testing.assert_allclose(out, [[10, 5, 40, 25]])
  assert labels.tolist() == [7] and labels.dtype == np.int32
  flipped, _ = pp.transform_boxes(box, np.array([7]), pp.Crop(0.5, 0.5, 30, 5, 40, 40, flip=True))
  np.testing.assert_allclose(flipped, [[0, 5, 30, 25]])  # x1' = 40 - 40, x2' = 40 - 10.


def test_drop_rule_keeps_boxes_with_at_least_30_percent_inside():
  boxes = np.array([
      [40, 20, 80, 40],  # Scaled (20, 10, 40, 20) -> (-10, 5, 10, 15): 50% inside, kept as (0, 5, 10, 15).
      [34, 20, 74, 40],  # (-13, 5, 7, 15): 35% -> kept.
      [30, 20, 70, 40],  # (-15, 5, 5, 15): 25% -> dropped.
      [0, 0, 20, 8],     # entirely outside -> dropped.
  ], np.float32)
  out, labels = pp.transform_boxes(boxes, np.arange(4), CROP)
  np.testing.assert_allclose(out, [[0, 5, 10, 15], [0, 5, 7, 15]])
  assert labels.tolist() == [0, 1]
  # Evaluation crops keep every box that keeps any area.
  out, labels = pp.transform_boxes(boxes, np.arange(4), CROP, min_visible=0.0)
  assert labels.tolist() == [0, 1, 2]


def test_pixels_follow_crop_and_flip_exactly_at_scale_one():
  image = np.arange(8 * 10 * 3, dtype=np.uint8).reshape(8, 10, 3)
  out, _ = pp.crop_image(image, lambda h, w: pp.Crop(1.0, 1.0, 3, 2, 4, 4, flip=True))
  np.testing.assert_array_equal(out, image[2:6, 3:7][:, ::-1])


@pytest.mark.parametrize('seed', range(6))
def test_rendered_rectangle_and_its_box_stay_together(seed):
  """A white rectangle's pixels and its box go through the same random crop/flip (JPEG fused path)."""
  image = np.zeros((90, 120, 3), np.uint8)
  image[30:60, 40:80] = 255
  record = {'image': _jpeg(image), 'boxes': np.array([[40, 30, 80, 60]], np.float32),
            'box_labels': np.array([3])}
  ex = pp.train_example(record, pp.example_rng(seed, 0, 0), crop_size=48, resize_smaller=60, max_boxes=2)
  assert ex['image'].shape == (48, 48, 3) and ex['label'] == -1
  ys, xs = np.nonzero(ex['image'][..., 0] > 128)
  seen = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
  if ex['box_labels'][0] == 3:
    np.testing.assert_allclose(ex['boxes'][0], seen, atol=1.5)
  assert ex['box_labels'][1] == -1 and np.all(ex['boxes'][1] == 0)


def test_train_crop_is_deterministic_per_example_and_varies():
  crops = [pp.train_crop(pp.example_rng(0, e, i), 300, 400, crop_size=231, resize_smaller=256)
           for e in range(2) for i in range(20)]
  again = [pp.train_crop(pp.example_rng(0, e, i), 300, 400, crop_size=231, resize_smaller=256)
           for e in range(2) for i in range(20)]
  assert crops == again
  assert len({(c.x0, c.y0) for c in crops}) > 10 and {c.flip for c in crops} == {True, False}
  for c in crops:
    assert round(300 * c.sy) == 256 and round(400 * c.sx) == 341
    assert 0 <= c.x0 <= 341 - 231 and 0 <= c.y0 <= 256 - 231


def test_scale_jitter_draws_every_smaller_side_of_its_range_and_keeps_the_box_on_the_object():
  crops = [pp.train_crop(pp.example_rng(0, 0, i), 72, 72, crop_size=64, resize_smaller=(64, 96))
           for i in range(400)]
  sides = {round(72 * c.sy) for c in crops}
  assert sides == set(range(64, 97))  # uniform over the closed range: all 33 values appear in 400 draws
  for c in crops:
    side = round(72 * c.sy)
    assert c.sx == c.sy and 0 <= c.x0 <= side - 64 and 0 <= c.y0 <= side - 64
  big = next(c for c in crops if round(72 * c.sy) == 96 and not c.flip)
  boxes, _ = pp.transform_boxes(np.array([[0, 0, 72, 72]], np.float32), np.array([1]), big)
  np.testing.assert_allclose(boxes[0], [0, 0, 64, 64])  # the whole image's box clipped to the crop


@pytest.mark.parametrize('bad', [(96, 64), (0, 10), (64,), (64, 96, 128), (64.0, 96), -5, 0])
def test_bad_scale_jitter_range_is_an_input_error(bad):
  with pytest.raises(InputError):
    pp.check_resize_smaller(bad)


def test_small_image_without_resize_is_upscaled_to_the_crop():
  c = pp.train_crop(np.random.default_rng(0), 40, 50, crop_size=64, resize_smaller=None)
  assert round(40 * c.sy) == 64 and round(50 * c.sx) == 80


def test_center_crop_matches_the_release_rule():
  c = pp.center_crop(100, 200, 50)  # Smaller side 50 -> 50 x 100, offset (100 - 50) // 2 = 25.
  assert c == pp.Crop(0.5, 0.5, 25, 0, 50, 50)
  c = pp.center_crop(301, 200, 231)  # Portrait: 348 x 231 (rounded), offset (348 - 231) // 2 = 58.
  assert (c.x0, c.y0, round(301 * c.sy)) == (0, 58, 348)


def test_eval_views_on_a_record():
  image = np.zeros((60, 80, 3), np.uint8)
  record = {'image': image, 'label': 4, 'boxes': np.array([[0, 0, 40, 30]], np.float32),
            'box_labels': np.array([4])}
  ex = pp.eval_example(record, view='resize', size=(30, 20), max_boxes=1)
  assert ex['image'].shape == (30, 20, 3) and ex['label'] == 4
  np.testing.assert_allclose(ex['boxes'], [[0, 0, 10, 15]])
  ex = pp.eval_example(record, view='center_crop', size=30, max_boxes=1)
  assert ex['image'].shape == (30, 30, 3)
  np.testing.assert_allclose(ex['boxes'], [[0, 0, 15, 15]])  # 30 x 40, offset x 5: (0,0,20,15) - 5, clipped.
  with pytest.raises(InputError):
    pp.eval_example(record, view='ten_crop', size=30, max_boxes=1)


def test_fused_jpeg_path_matches_decode_then_resize_then_crop():
  """Same pixels up to filter differences, and aligned: a 1-pixel shift of the reference is far worse."""
  rng = np.random.default_rng(0)
  small = rng.integers(0, 256, (15, 20, 3), dtype=np.uint8)
  image = np.asarray(Image.fromarray(small).resize((400, 300), Image.BILINEAR))
  data = _jpeg(image, subsampling=0)
  decoded = np.asarray(Image.open(io.BytesIO(data)))
  for size in (231, 64):  # 231: no DCT reduction (300 -> 259); 64: 1/4 DCT reduction (300 -> 72).
    crop = pp.train_crop(np.random.default_rng(1), 300, 400, crop_size=size, resize_smaller=size * 9 // 8)
    fused, _ = pp.crop_image(data, lambda h, w, c=crop: c, draft=True)
    plain, _ = pp.crop_image(decoded, lambda h, w, c=crop: c)
    moved = pp.Crop(crop.sx, crop.sy, crop.x0 + 1, crop.y0, crop.w, crop.h, crop.flip)
    shifted, _ = pp.crop_image(decoded, lambda h, w, c=moved: c)
    assert fused.shape == plain.shape == (size, size, 3)
    error = np.abs(fused.astype(int) - plain).mean()
    assert error < 1.5
    assert np.abs(shifted.astype(int) - plain).mean() > 5 * error


def test_grayscale_and_png_bytes_become_rgb():
  gray = io.BytesIO()
  Image.fromarray(np.full((40, 50), 200, np.uint8)).save(gray, format='jpeg')
  out, _ = pp.crop_image(gray.getvalue(), lambda h, w: pp.full_resize(h, w, (20, 25)))
  assert out.shape == (20, 25, 3) and abs(int(out.mean()) - 200) <= 2
  png = io.BytesIO()
  Image.fromarray(np.full((40, 50, 3), 9, np.uint8)).save(png, format='png')
  out, _ = pp.crop_image(png.getvalue(), lambda h, w: pp.center_crop(h, w, 40))
  assert out.shape == (40, 40, 3) and np.all(out == 9)


def test_bad_bytes_raise_input_error():
  with pytest.raises(InputError):
    pp.crop_image(b'not an image', lambda h, w: pp.center_crop(h, w, 8))


def test_pad_boxes_pads_and_truncates():
  boxes, labels, dropped = pp.pad_boxes(np.ones((3, 4), np.float32), np.array([1, 2, 3]), 2)
  assert boxes.shape == (2, 4) and labels.tolist() == [1, 2] and dropped == 1
  boxes, labels, dropped = pp.pad_boxes(np.zeros((0, 4), np.float32), np.zeros((0,)), 3)
  assert labels.tolist() == [-1, -1, -1] and dropped == 0


def _stacked_reference(records, seeds, crop_size, resize_smaller, max_boxes):
  """The per-record definition: Pillow's crop_image, transform_boxes, pad_boxes, then stacked."""
  rows = []
  for record, seed in zip(records, seeds):
    image, crop = pp.crop_image(record['image'], lambda h, w, s=seed: pp.train_crop(
        pp.example_rng(*s), h, w, crop_size=crop_size, resize_smaller=resize_smaller), draft=True)
    boxes, labels = pp.transform_boxes(record['boxes'], record['box_labels'], crop)
    boxes, labels, _ = pp.pad_boxes(boxes, labels, max_boxes)
    rows.append({'image': image, 'label': np.int32(record.get('label', -1)), 'boxes': boxes,
                 'box_labels': labels})
  return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


@pytest.mark.parametrize('subsampling', [0, 2])
def test_train_batch_equals_the_per_record_pillow_path(subsampling):
  """libjpeg-turbo via simplejpeg at scale 1 (flipped and not), a resampled record, a decoded array, a gray
  JPEG, a PNG, records with 0, 1 and 6 boxes (max 4): the batch equals the per-record Pillow definition."""
  rng = np.random.default_rng(subsampling)
  photo = np.asarray(Image.fromarray(rng.integers(0, 256, (12, 16, 3), np.uint8)).resize((91, 68)))
  gray = io.BytesIO()
  Image.fromarray(photo[..., 0]).save(gray, format='jpeg')
  png = io.BytesIO()
  Image.fromarray(photo).save(png, format='png')
  images = [_jpeg(photo, subsampling=subsampling)] * 6 + [gray.getvalue(), png.getvalue(), photo,
                                                          _jpeg(np.asarray(Image.fromarray(photo).resize((120, 90))))]
  many = rng.uniform(0, 60, (6, 2))
  box_sets = [np.zeros((0, 4)), np.array([[10, 5, 60, 50]]), np.concatenate([many, many + 25], axis=1)]
  records = [{'image': im, 'label': i, 'boxes': box_sets[i % 3].astype(np.float32),
              'box_labels': np.arange(len(box_sets[i % 3])) + i} for i, im in enumerate(images)]
  seeds = [(3, 1, i) for i in range(len(records))]
  batch = pp.train_batch(records, [pp.example_rng(*s) for s in seeds], crop_size=64, resize_smaller=68,
                         max_boxes=4)
  reference = _stacked_reference(records, seeds, 64, 68, 4)
  assert batch.keys() == reference.keys()
  for k in batch:
    assert batch[k].dtype == reference[k].dtype and batch[k].shape == reference[k].shape
    np.testing.assert_array_equal(batch[k], reference[k], err_msg=k)
  flips = [pp.train_crop(pp.example_rng(*s), 68, 91, crop_size=64, resize_smaller=68).flip for s in seeds[:6]]
  assert set(flips) == {True, False}  # both turbo paths ran
  assert (batch['box_labels'][2] >= 0).sum() <= 4 and np.all(batch['box_labels'][0] == -1)


def test_train_batch_without_simplejpeg_and_with_a_truncated_jpeg_takes_pillow(monkeypatch):
  rng = np.random.default_rng(0)
  photo = np.asarray(Image.fromarray(rng.integers(0, 256, (12, 16, 3), np.uint8)).resize((300, 200)))
  data = _jpeg(photo)
  cut = data[:int(len(data) * 0.97)]  # a few rows missing: kept by the images module's policy
  records = [{'image': d, 'boxes': np.zeros((0, 4), np.float32), 'box_labels': np.zeros((0,), np.int64)}
             for d in (data, cut)]
  kw = dict(crop_size=150, resize_smaller=200, max_boxes=1)
  fast = pp.train_batch(records, [pp.example_rng(0, 0, i) for i in range(2)], **kw)
  np.testing.assert_array_equal(fast['image'], _stacked_reference(records, [(0, 0, 0), (0, 0, 1)], 150, 200,
                                                                   1)['image'])
  monkeypatch.setattr(pp, 'simplejpeg', None)
  plain = pp.train_batch(records, [pp.example_rng(0, 0, i) for i in range(2)], **kw)
  np.testing.assert_array_equal(fast['image'], plain['image'])


def test_example_rng_is_uniform_and_per_example():
  draws = np.array([pp.example_rng(0, 0, i).random() for i in range(4000)])
  assert 0 <= draws.min() and draws.max() < 1 and abs(draws.mean() - 0.5) < 0.02
  assert np.histogram(draws, bins=10, range=(0, 1))[0].min() > 330  # 400 expected per bin
  a, b = pp.example_rng(5, 2, 7), pp.example_rng(5, 2, 7)
  sequence = [a.integers(0, 10) for _ in range(20)]
  assert sequence == [b.integers(0, 10) for _ in range(20)] and len(set(sequence)) > 3
  assert pp.example_rng(5, 2, 7).random() != pp.example_rng(5, 2, 8).random() != pp.example_rng(5, 3, 7).random()


@pytest.mark.parametrize('width', [1, 5, 8, 64, 231])
def test_mirror_rows_equals_a_reversed_copy(width):
  """The word-wise mirror of the flipped fast path: byte for byte numpy's reversed rows, for row lengths with
  every remainder mod 8 and for a strided source (a crop inside a decoded image)."""
  decoded = np.random.default_rng(width).integers(0, 256, (9, width + 7, 3), np.uint8)
  rows = decoded[2:8, 3:3 + width].reshape(6, width * 3)
  out = np.empty((6, width * 3), np.uint8)
  pp._mirror_rows(rows, out)  # pylint: disable=protected-access
  np.testing.assert_array_equal(out, rows[:, ::-1])
