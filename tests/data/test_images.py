"""Robust decoding: every oddity of real ImageNet becomes uint8 RGB or a one-line InputError with a reason."""

import io

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import imagenet_fixtures as fx
import numpy as np
from PIL import Image
import pytest

from overfeat_jax.data import images
from overfeat_jax.errors import InputError
from tests import photos


def _write(tmp_path, name, data):
  path = tmp_path / name
  path.write_bytes(data)
  return path


def test_rgb_jpeg_decodes_close_to_source_and_keeps_its_bytes(tmp_path):
  source = fx.pattern(1)
  data = fx.encode(source)
  array = images.load_rgb(_write(tmp_path, 'a.JPEG', data))
  assert array.dtype == np.uint8 and array.shape == (fx.H, fx.W, 3)
  assert np.abs(array.astype(int) - source).mean() < 6  # JPEG q92 of a smooth pattern
  decoded = images.decode(data, name='a.JPEG')
  assert decoded.repairs == ()
  stored = images.encode_for_storage(decoded)
  assert stored.data == data and not stored.reencoded and (stored.scale_x, stored.scale_y) == (1.0, 1.0)


def test_cmyk_jpeg_becomes_rgb_and_is_reencoded():
  source = fx.pattern(4)
  decoded = images.decode(fx.encode(source, mode='CMYK'), name='c.JPEG')
  assert decoded.source_mode == 'CMYK' and decoded.repairs == ('cmyk_to_rgb',)
  array = np.asarray(decoded.image)
  assert array.shape == (fx.H, fx.W, 3) and np.abs(array.astype(int) - source).mean() < 8
  stored = images.encode_for_storage(decoded)
  assert stored.reencoded and Image.open(io.BytesIO(stored.data)).mode == 'RGB'


def test_grayscale_jpeg_has_three_equal_channels():
  decoded = images.decode(fx.encode(fx.pattern(5), mode='L'), name='g.JPEG')
  array = np.asarray(decoded.image)
  assert decoded.repairs == ('grayscale_to_rgb',)
  np.testing.assert_array_equal(array[..., 0], array[..., 1])
  np.testing.assert_array_equal(array[..., 0], array[..., 2])


def test_png_named_jpeg_is_pixel_exact_and_counted(tmp_path):
  source = fx.pattern(6)
  path = _write(tmp_path, 'n02105855_2933.JPEG', fx.encode(source, 'PNG'))
  decoded = images.decode(path)
  assert decoded.source_format == 'PNG' and decoded.repairs == ('png_named_jpeg',)
  np.testing.assert_array_equal(np.asarray(decoded.image), source)
  assert images.encode_for_storage(decoded).reencoded


def test_palette_alpha_is_composited_over_white():
  decoded = images.decode(fx.palette_with_alpha(8), name='p.png')
  array = np.asarray(decoded.image)
  assert decoded.repairs == ('alpha_composited_on_white',)
  assert (array[:, : fx.W // 2] == 255).all()         # transparent half: white
  assert (array[:, fx.W // 2:] < 255).any()           # opaque half keeps its colours


def test_rgba_half_transparent_pixel_is_blended_with_white():
  rgba = np.zeros((4, 4, 4), np.uint8)
  rgba[..., 0] = 200
  rgba[..., 3] = 128  # about half opaque red over white: G = B = 255 * (1 - 128/255) = 127
  array = images.load_rgb(fx.encode(rgba, 'PNG'))
  assert abs(int(array[0, 0, 0]) - 227) <= 1 and abs(int(array[0, 0, 1]) - 127) <= 1


def test_16_bit_grayscale_png_is_scaled_to_8_bits():
  wide = np.array([[0, 65535], [32896, 257]], np.uint16)
  array = images.load_rgb(fx.encode(Image.fromarray(wide), 'PNG'))
  np.testing.assert_array_equal(array[..., 0], [[0, 255], [128, 1]])


@pytest.mark.parametrize('name,data,reason', [
    ('empty.JPEG', b'', 'empty'),
    ('text.JPEG', b'hello, not an image\n' * 3, 'not_an_image'),
    ('trunc.JPEG', fx.truncated(fx.encode(fx.pattern(7))), 'truncated'),
])
def test_unusable_files_raise_input_error_with_reason(tmp_path, name, data, reason):
  with pytest.raises(InputError) as info:
    images.load_rgb(_write(tmp_path, name, data))
  assert info.value.reason == reason
  assert name in str(info.value) and '\n' not in str(info.value)


def test_corrupt_png_is_reported_as_corrupt():
  data = bytearray(fx.encode(fx.pattern(3), 'PNG'))
  data[60:80] = b'\x00' * 20  # inside the IDAT chunk: the zlib stream or its CRC breaks
  with pytest.raises(images.ImageDecodeError) as info:
    images.decode(bytes(data), name='x.png')
  assert info.value.reason == 'corrupt'


def test_missing_file_and_directory(tmp_path):
  with pytest.raises(images.ImageDecodeError, match='does not exist') as info:
    images.load_rgb(tmp_path / 'nope.JPEG')
  assert info.value.reason == 'missing'
  with pytest.raises(images.ImageDecodeError, match='directory'):
    images.load_rgb(tmp_path)


def test_min_size_rejects_one_pixel_image_but_not_by_default():
  one = fx.encode(np.full((1, 1, 3), 9, np.uint8))
  assert images.load_rgb(one).shape == (1, 1, 3)
  with pytest.raises(images.ImageDecodeError, match='1x1 pixels') as info:
    images.load_rgb(one, min_size=2)
  assert info.value.reason == 'too_small'


def test_resize_to_256_smaller_side_and_scale_factors():
  decoded = images.decode(fx.encode(fx.pattern(1)), name='a.JPEG')  # 40x30
  stored = images.encode_for_storage(decoded, smaller_side=256)
  image = Image.open(io.BytesIO(stored.data))
  assert image.size == (341, 256) == (stored.width, stored.height)  # round(40 * 256 / 30) = 341
  assert stored.reencoded and stored.scale_x == 341 / 40 and stored.scale_y == 256 / 30


@settings(max_examples=30, deadline=None)
@given(w=st.integers(1, 200), h=st.integers(1, 200), size=st.integers(1, 64))
def test_resized_smaller_side_property(w, h, size):
  out = images.resized_smaller_side(Image.new('RGB', (w, h)), size)
  assert min(out.size) == size
  long_in, long_out = max(w, h), max(out.size)
  assert abs(long_out - long_in * size / min(w, h)) <= 0.5 + 1e-9 or long_out == 1


# --- truncated JPEGs: the one decode policy (docs/data_imagenet.md "Truncated JPEGs") ----------------------
@pytest.fixture(scope='module')
def photo_jpeg():
  return fx.encode(photos.photo())


def _cut(data: bytes, where: str) -> bytes:
  return {'20_short': data[:-20], 'half': data[:len(data) // 2], 'third': data[:len(data) // 3]}[where]


def test_jpeg_20_bytes_short_is_kept_whole_but_its_last_block_row(photo_jpeg):
  full = np.asarray(images.decode(photo_jpeg).image)
  decoded = images.decode(_cut(photo_jpeg, '20_short'), name='x.JPEG')
  assert decoded.repairs == ('truncated_repaired',) and decoded.size == (500, 375)
  got = np.asarray(decoded.image)
  # 4:2:0 JPEG: 16-row MCUs; every MCU row but the last decodes exactly as the whole file does.
  np.testing.assert_array_equal(got[:375 // 16 * 16 - 1], full[:375 // 16 * 16 - 1])
  assert images.missing_rows(decoded.image) == 0
  stored = images.encode_for_storage(decoded)
  assert stored.reencoded and images.decode(stored.data).repairs == ()  # what tfds stores is a whole JPEG


@pytest.mark.parametrize('where,missing', [('half', (150, 220)), ('third', (220, 280))])
def test_jpeg_cut_at_half_or_a_third_is_refused_naming_the_missing_rows(photo_jpeg, where, missing):
  with pytest.raises(images.ImageDecodeError) as info:
    images.decode(_cut(photo_jpeg, where), name='x.JPEG')
  assert info.value.reason == 'truncated' and 'x.JPEG' in str(info.value)
  count = int(str(info.value).split(' of its ')[0].rsplit(' ', 1)[1])
  assert missing[0] <= count <= missing[1], str(info.value)


@pytest.mark.parametrize('where', ['20_short', 'half', 'third'])
def test_per_call_decode_equals_pillow_load_truncated_images_and_leaves_the_flag_alone(photo_jpeg, where):
  from PIL import ImageFile  # pylint: disable=g-import-not-at-top
  data = _cut(photo_jpeg, where)
  old = ImageFile.LOAD_TRUNCATED_IMAGES
  ImageFile.LOAD_TRUNCATED_IMAGES = True
  try:
    reference = np.asarray(Image.open(io.BytesIO(data)).convert('RGB'))
  finally:
    ImageFile.LOAD_TRUNCATED_IMAGES = old
  ours = images._open(data, 'x')[0] if where == '20_short' else images._load(data + b'\xff\xd9', 'x')  # pylint: disable=protected-access
  np.testing.assert_array_equal(np.asarray(ours.convert('RGB')), reference)
  assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize('mode', ['L', 'CMYK'])
def test_grayscale_and_cmyk_jpegs_follow_the_same_rule(mode):
  data = fx.encode(photos.photo(), mode=mode)
  assert images.decode(data[:-20]).repairs[0] == 'truncated_repaired'
  with pytest.raises(images.ImageDecodeError, match='rows are missing'):
    images.decode(data[:len(data) // 2])


def test_progressive_jpeg_cut_in_its_detail_scans_is_whole_and_kept():
  source = photos.photo(seed=1)
  data = fx.encode(source, progressive=True)
  decoded = images.decode(data[:len(data) // 2])
  assert decoded.repairs == ('truncated_repaired',)
  assert np.abs(np.asarray(decoded.image).astype(int) - source).mean() < 40  # coarser, but every row is there


def test_truncated_png_is_refused():
  data = fx.encode(photos.photo(120, 90), 'PNG')
  with pytest.raises(images.ImageDecodeError) as info:
    images.decode(data[:len(data) * 9 // 10])
  assert info.value.reason == 'truncated'


def test_training_pipeline_uses_the_same_policy(photo_jpeg):
  from overfeat_jax.data import preprocess  # pylint: disable=g-import-not-at-top
  view = lambda h, w: preprocess.full_resize(h, w, (64, 64))
  kept, _ = preprocess.crop_image(_cut(photo_jpeg, '20_short'), view)
  whole, _ = preprocess.crop_image(photo_jpeg, view)
  assert kept.shape == (64, 64, 3) and np.abs(kept.astype(int) - whole).mean() < 3
  with pytest.raises(InputError, match='rows are missing'):
    preprocess.crop_image(_cut(photo_jpeg, 'half'), view)


@pytest.mark.parametrize('where,kept', [('20_short', True), ('half', False)])
def test_builders_keep_or_skip_and_count(photo_jpeg, where, kept):
  """CLS-LOC and DET build every record through `imagenet_cls_loc.make_example`."""
  from overfeat_jax.data import annotations, imagenet_cls_loc, report  # pylint: disable=g-import-not-at-top
  rep = report.BuildReport('val')
  ann = annotations.RawAnnotation('x', 500, 375, (annotations.RawObject('n1', 11, 21, 300, 200),))
  example = imagenet_cls_loc.make_example('x', _cut(photo_jpeg, where), 'x.JPEG', ann, {'n1': 0}, None, rep)
  if kept:
    assert rep.repaired['truncated_repaired'] == 1 and rep.kept == 1 and not rep.skipped
    np.testing.assert_allclose(example['boxes'], [[10, 20, 300, 200]])
  else:
    assert example is None and rep.skipped['truncated'] == 1 and rep.kept == 0


# --- EXIF orientation -------------------------------------------------------------------------------------
def exif_jpeg(array: np.ndarray, orientation: int) -> bytes:
  """A JPEG of `array` (as stored) whose EXIF says how to turn it for viewing (6: 90 degrees clockwise)."""
  image = Image.fromarray(array)
  exif = image.getexif()
  exif[images.ORIENTATION_TAG] = orientation
  return fx.encode(image, exif=exif.tobytes())


def test_exif_orientation_is_ignored_by_default_and_applied_on_request():
  stored = np.zeros((30, 40, 3), np.uint8)
  stored[:10, :10] = 255  # a white square at the stored top-left corner
  data = exif_jpeg(stored, 6)
  plain = images.decode(data)
  assert plain.size == (40, 30) and plain.repairs == ()
  turned = images.decode(data, exif_transpose=True)
  assert turned.size == (30, 40) and turned.repairs == ('exif_transposed',)
  corner = np.asarray(turned.image)[:10, -10:].mean()  # rotated 90 degrees clockwise: now at the top right
  assert corner > 200 and np.asarray(turned.image)[:10, :10].mean() < 50
  assert images.encode_for_storage(turned).reencoded
  assert images.decode(fx.encode(stored), exif_transpose=True).repairs == ()  # no tag: nothing to do
