"""The classify command: release views, exactness against the NumPy release reference, and the command line."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.entry_points import import_entry_point

classify = import_entry_point('classify')
from overfeat_jax.data import images as images_lib
from overfeat_jax.inference import classify_views as views
from overfeat_jax.models import ACCURATE, FAST, SMALL
from overfeat_jax.models.overfeat import OverFeat
from tests.photos import photo_jpeg
from tests import release_reference as ref

CLASSES = 10
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_release_file(path, geometry, num_classes, seed=0):
  """Random weights in the release layout, He-scaled so that every layer's activations stay of order 1."""
  rng, chunks = np.random.default_rng(seed), []
  for module in ref.modules(geometry, num_classes):
    if module[0] == 'conv':
      _, out, inp, k, _ = module
      chunks.append(rng.standard_normal(out * inp * k * k) * np.sqrt(2.0 / (inp * k * k)))
      chunks.append(rng.standard_normal(out) * 0.1)
  np.concatenate(chunks).astype('<f4').tofile(path)


def random_image(path, height, width, seed=0):
  image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
  Image.fromarray(image).save(path)
  return image


def assert_close(actual, expected, name):
  assert actual.shape == expected.shape, f'{name}: {actual.shape} vs {expected.shape}'
  error = np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-30)
  assert error <= 1e-4, f'layer {name}: relative error {error:.2e}'


# --- views and batching -------------------------------------------------------------------------------------
@pytest.mark.parametrize('shape, offsets', [((300, 400), (0, 50)), ((400, 300), (50, 0)), ((231, 231), (0, 0)),
                                            ((231, 232), (0, 0)), ((231, 234), (0, 1)), ((235, 231), (2, 0))])
def test_crop_offsets(shape, offsets):
  assert views.crop_offsets(*shape) == offsets


def test_release_view_resizes_smaller_side_then_crops_the_centre():
  image = np.random.default_rng(0).integers(0, 256, (250, 310, 3), dtype=np.uint8)
  view = views.release_view(image)
  resized = images_lib.resize(image, (231, 286))  # the one image path's filter; 310 * 231/250 = 286.4
  # (286 - 231) // 2 = 27. The view resamples only the crop's box (`preprocess.eval_view`, as the eval pipeline):
  # Pillow's fixed-point weights at the box's offset round a few pixels the other way (1 grey level).
  difference = np.abs(view.astype(int) - resized[:, 27:258])
  assert view.shape == (231, 231, 3) and difference.max() <= 1 and (difference > 0).mean() < 1e-3
  square = np.zeros((231, 231, 3), np.uint8)
  assert views.release_view(square) is not square and np.array_equal(views.release_view(square), square)


def test_view_size_is_the_releases_231_when_it_gives_one_output():
  assert views.view_size(FAST) == views.view_size(ACCURATE) == views.view_size(FAST.scaled(16)) == 231
  assert views.view_size(SMALL) == 64


def test_batches_group_by_shape_and_pad_to_a_fixed_size():
  a, b = np.ones((4, 5, 3), np.uint8), np.full((6, 5, 3), 2, np.uint8)
  batches = list(views.batches_by_size([(0, a), (1, b), (2, a), (3, a), (4, b)], 2))
  assert [batch.indices for batch in batches] == [(0, 2), (1, 4), (3,)]
  assert all(batch.images.shape[0] == 2 for batch in batches)
  np.testing.assert_array_equal(batches[2].images[1], 0)  # padding
  np.testing.assert_array_equal(batches[1].images, np.stack([b, b]))


# --- exactness against the release reference --------------------------------------------------------------
@pytest.fixture(scope='module', params=[FAST.scaled(16), ACCURATE.scaled(16)], ids=lambda g: g.name)
def network(request, tmp_path_factory):
  geometry = request.param
  folder = tmp_path_factory.mktemp(geometry.name.replace('/', '_'))
  write_release_file(folder / 'weights', geometry, CLASSES)
  model = OverFeat(geometry, num_classes=CLASSES)
  params = classify.load_params(str(folder / 'weights'), geometry, CLASSES)
  weights = ref.read_weights(str(folder / 'weights'), geometry, CLASSES)
  return model, params, weights, folder


def test_reference_numbering_is_the_releases():
  kinds = [m[0] for m in ref.modules(FAST, 1000)]
  assert kinds == ['input', 'conv', 'relu', 'pool', 'conv', 'relu', 'pool', 'pad', 'conv', 'relu', 'pad', 'conv',
                   'relu', 'pad', 'conv', 'relu', 'pool', 'conv', 'relu', 'conv', 'relu', 'conv', 'softmax']
  assert len(ref.modules(ACCURATE, 1000)) == 26 and ref.modules(ACCURATE, 1000)[22][0] == 'conv'
  for geometry in (FAST, ACCURATE):
    for module, name in zip(ref.modules(geometry, 1000), geometry.layer_names()):
      assert name.rstrip('0123456789').replace('fc', 'conv') == module[0], (module, name)


def test_every_layer_matches_the_reference_in_feature_mode(network):
  model, params, weights, folder = network
  geometry = model.geometry
  height, width = geometry.input_size + geometry.coarse_stride, geometry.input_size + 2 * geometry.coarse_stride
  image = random_image(folder / 'wide.png', height, width, seed=1)  # non-square, 2 x 3 outputs
  expected = ref.forward(image, geometry, weights, CLASSES)
  layers = list(range(len(geometry.layer_names())))
  actual = classify.extract_layers(model, params, [str(folder / 'wide.png')], layers, batch_size=2)[0]
  assert expected[-1].shape[1:] == (2, 3)
  for layer in layers:
    assert_close(actual[layer], expected[layer], f'{layer} ({geometry.layer_names()[layer]})')


def test_top_n_mode_matches_the_reference(network):
  model, params, weights, folder = network
  geometry = model.geometry
  image = random_image(folder / 'photo.png', 250, 310, seed=2)
  view = views.release_view(image)  # smaller side to 231 (310 * 231/250 = 286.4), central square
  expected = ref.forward(view, geometry, weights, CLASSES)
  probabilities = classify.classify_top(model, params, [str(folder / 'photo.png')] * 3, batch_size=2)
  assert probabilities.shape == (3, CLASSES)
  for row in probabilities:
    assert_close(row, expected[-1][:, 0, 0], 'softmax')
  # The whole network on the view the top-N mode builds: every layer (the view itself: the test above).
  Image.fromarray(view).save(folder / 'view.png')
  layers = list(range(len(geometry.layer_names())))
  actual = classify.extract_layers(model, params, [str(folder / 'view.png')], layers, batch_size=1)[0]
  for layer in layers:
    assert_close(actual[layer], expected[layer], f'{layer} ({geometry.layer_names()[layer]})')


def _mirror_image(path, height, width, seed):
  """A left-right symmetric image (also for odd widths)."""
  half = np.random.default_rng(seed).integers(0, 256, (height, (width + 1) // 2, 3), dtype=np.uint8)
  Image.fromarray(np.concatenate([half, half[:, ::-1][:, width % 2:]], axis=1)).save(path)


def test_multiscale_averages_scales_and_flips(network):
  model, params, weights, folder = network
  geometry = model.geometry
  # A width whose fine-stride windows tile it exactly, so that the flipped image has the mirrored windows.
  width = geometry.input_size + 5 * geometry.fine_stride
  assert geometry.output_size(width, fine=True) == 6
  _mirror_image(folder / 'mirror.png', 300, width, seed=3)
  random_image(folder / 'plain.png', 300, 340, seed=4)
  paths = [str(folder / 'mirror.png'), str(folder / 'plain.png')]
  scales = [(289, 305), (300, width)]
  both = classify.classify_multiscale(model, params, paths, 2, scales, flips=True, view_size=width)
  each = [classify.classify_multiscale(model, params, paths, 2, [s], flips=True, view_size=width) for s in scales]
  np.testing.assert_allclose(both, (each[0] + each[1]) / 2, rtol=1e-5, atol=1e-7)
  flipped = classify.classify_multiscale(model, params, paths, 2, scales[1:], flips=True)
  no_flip = classify.classify_multiscale(model, params, paths, 2, scales[1:], flips=False)
  np.testing.assert_allclose(no_flip[0], flipped[0], rtol=1e-4, atol=1e-6)  # a mirror image is its own flip
  assert not np.allclose(no_flip[1], flipped[1], rtol=1e-4, atol=1e-6)


# --- the command line ------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def files(tmp_path_factory):
  d = tmp_path_factory.mktemp('cli')
  write_release_file(d / 'fast16', FAST.scaled(16), CLASSES)
  write_release_file(d / 'accurate16', ACCURATE.scaled(16), CLASSES)
  rgb = random_image(d / 'rgb.png', 240, 260)
  Image.fromarray(rgb).convert('CMYK').save(d / 'cmyk.jpg')
  Image.fromarray(rgb).convert('L').save(d / 'gray.jpg')
  alpha = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 128, np.uint8)], axis=2)
  Image.fromarray(alpha, 'RGBA').save(d / 'alpha.png')
  random_image(d / 'small.png', 60, 80)
  Image.fromarray(rgb).save(d / 'full.jpg')
  (d / 'truncated.jpg').write_bytes((d / 'full.jpg').read_bytes()[:2000])
  (d / 'notes.jpg').write_text('not an image\n')
  Image.fromarray(rgb[:, ::-1]).save(d / 'other.png')
  return d


def run_cli(*args):
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT)
  return subprocess.run([sys.executable, '-m', 'overfeat_jax.classify', '--width_divisor=16',
                         f'--num_classes={CLASSES}', *map(str, args)], capture_output=True, text=True, env=env,
                        cwd=ROOT, timeout=300)


def test_cli_top_n_accepts_every_valid_kind_of_image(files):
  images = [files / n for n in ('rgb.png', 'cmyk.jpg', 'gray.jpg', 'alpha.png', 'small.png')]
  result = run_cli(f'--weights={files / "fast16"}', '--json', '--top=3', '--batch_size=2', *images)
  assert result.returncode == 0, result.stderr
  records = [json.loads(line) for line in result.stdout.splitlines()]
  assert [r['image'] for r in records] == [str(p) for p in images]
  model = OverFeat(FAST.scaled(16), num_classes=CLASSES)
  params = classify.load_params(str(files / 'fast16'), model.geometry, CLASSES)
  expected = classify.classify_top(model, params, [str(p) for p in images], batch_size=4)
  for record, row in zip(records, expected):
    assert [t['index'] for t in record['top']] == list(np.argsort(-row, kind='stable')[:3])
    np.testing.assert_allclose([t['probability'] for t in record['top']], np.sort(row)[::-1][:3], rtol=1e-5)
    assert all(t['ilsvrc2012_id'] == t['index'] + 1 for t in record['top'])


@pytest.mark.parametrize('args, message', [
    (['--weights={fast16}', '{missing}'], 'does not exist'),
    (['--weights={fast16}', '{notes}'], 'not an image'),
    (['--weights={fast16}', '{truncated}'], 'truncated'),
    (['--weights={fast16}', '--features', '{small}'], 'needs at least 231x231'),
    (['--weights={accurate16}', '{rgb}'], 'bytes but the fast/16 network with 10 classes needs'),
    (['--weights={fast16}', '--layer=23', '{rgb}'], 'layer 23 does not exist'),
    # A 100,000-pixel view asked for 30 GB on the host: the kernel killed the process (field case).
    (['--weights={fast16}', '--multiscale', '--view_size=100000', '{rgb}'], '--view_size=100000 asks for a'),
    # An existing folder as --output wrote FOLDER.npy beside it (field case).
    (['--weights={fast16}', '--features', '--output={folder}', '{rgb}'], 'is a folder; --output names the file'),
])
def test_cli_bad_input_is_one_line_and_exit_status_2(files, args, message):
  names = {'fast16': files / 'fast16', 'accurate16': files / 'accurate16', 'missing': files / 'missing.jpg',
           'notes': files / 'notes.jpg', 'truncated': files / 'truncated.jpg', 'small': files / 'small.png',
           'rgb': files / 'rgb.png', 'folder': files}
  result = run_cli(*[a.format(**names) for a in args])
  assert result.returncode == 2, result.stdout + result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and message in lines[0], result.stderr


def test_cli_features_write_one_file_per_image(files, tmp_path):
  paths = [files / 'rgb.png', files / 'other.png']
  result = run_cli(f'--weights={files / "fast16"}', '--features', f'--output={tmp_path / "f.npy"}', '--json', *paths)
  assert result.returncode == 0, result.stderr
  records = [json.loads(line) for line in result.stdout.splitlines()]
  model = OverFeat(FAST.scaled(16), num_classes=CLASSES)
  params = classify.load_params(str(files / 'fast16'), model.geometry, CLASSES)
  expected = classify.extract_features(model, params, [str(p) for p in paths], 19, batch_size=2)
  for record, path, want in zip(records, ('f_rgb.npy', 'f_other.npy'), expected):
    assert record['layer'] == 19 and record['layer_name'] == 'fc7' and record['file'] == str(tmp_path / path)
    saved = np.load(tmp_path / path, allow_pickle=False)
    assert saved.dtype == np.float32 and saved.shape == tuple(record['shape']) == want.shape
    np.testing.assert_allclose(saved, want, rtol=1e-6, atol=1e-6)


def test_cli_features_of_equal_stems_get_distinct_files(files, tmp_path):
  """`a/x.png` and `b/x.png` -> f_a_x.npy and f_b_x.npy (overfeat_jax/output_names.py), each its own image's."""
  for folder, source in (('a', 'rgb.png'), ('b', 'other.png')):
    (tmp_path / folder).mkdir()
    (tmp_path / folder / 'x.png').write_bytes((files / source).read_bytes())
  paths = [tmp_path / 'a' / 'x.png', tmp_path / 'b' / 'x.png']
  result = run_cli(f'--weights={files / "fast16"}', '--features', f'--output={tmp_path / "f.npy"}', *paths)
  assert result.returncode == 0, result.stderr
  model = OverFeat(FAST.scaled(16), num_classes=CLASSES)
  params = classify.load_params(str(files / 'fast16'), model.geometry, CLASSES)
  expected = classify.extract_features(model, params, [str(files / 'rgb.png'), str(files / 'other.png')], 19, 2)
  for name, want in zip(('f_a_x.npy', 'f_b_x.npy'), expected):
    np.testing.assert_allclose(np.load(tmp_path / name, allow_pickle=False), want, rtol=1e-6, atol=1e-6)
  again = run_cli(f'--weights={files / "fast16"}', '--features', f'--output={tmp_path / "g.npy"}', paths[0],
                  tmp_path / 'b' / '..' / 'a' / 'x.png')
  assert again.returncode == 2 and 'given twice' in again.stderr, again.stderr
  assert not list(tmp_path.glob('g*'))


def test_cli_features_rerun_names_the_replaced_files_and_a_bad_output_is_one_line(files, tmp_path):
  """A rerun into the same --output replaces its files and says which (stderr note, exit 0); an --output whose
  folder cannot take files is one line naming that path, exit 2 (not a FileNotFoundError on a temporary)."""
  paths = [files / 'rgb.png', files / 'other.png']
  args = (f'--weights={files / "fast16"}', '--features', f'--output={tmp_path / "f.npy"}', *paths)
  first = run_cli(*args)
  assert first.returncode == 0 and 'replaced' not in first.stderr, first.stderr
  again = run_cli(*args)
  assert again.returncode == 0, again.stderr
  notes = [line for line in again.stderr.splitlines() if ': note: ' in line]
  assert notes == [f'classify.py: note: replaced 2 earlier outputs: {tmp_path / "f_rgb.npy"}, '
                   f'{tmp_path / "f_other.npy"}'], again.stderr
  bad = run_cli(f'--weights={files / "fast16"}', '--features', f'--output={tmp_path / "no" / "x.npy"}', paths[0])
  assert bad.returncode == 2 and 'Traceback' not in bad.stderr, bad.stderr
  assert bad.stderr.strip().splitlines()[-1].endswith(f'error: cannot write {tmp_path / "no" / "x.npy"}: '
                                                      'No such file or directory'), bad.stderr


def test_cli_classifies_every_usable_image_names_each_bad_one_and_exits_2(files, tmp_path):
  data = photo_jpeg(260, 240, seed=1)
  (tmp_path / 'short.jpg').write_bytes(data[:-20])
  (tmp_path / 'third.jpg').write_bytes(data[:len(data) // 3])
  images = [files / 'rgb.png', tmp_path / 'third.jpg', files / 'missing.jpg', tmp_path / 'short.jpg']
  result = run_cli(f'--weights={files / "fast16"}', '--json', '--top=3', *images)
  assert result.returncode == 2 and 'Traceback' not in result.stderr, result.stderr
  errors = result.stderr.strip().splitlines()
  assert len(errors) == 2 and 'third.jpg' in errors[0] and 'rows are missing' in errors[0], errors
  assert 'missing.jpg' in errors[1], errors
  records = [json.loads(line) for line in result.stdout.splitlines()]
  assert [r['image'] for r in records] == [str(files / 'rgb.png'), str(tmp_path / 'short.jpg')]
  model = OverFeat(FAST.scaled(16), num_classes=CLASSES)
  params = classify.load_params(str(files / 'fast16'), model.geometry, CLASSES)
  reading = classify.Reading(errors={})
  scores = classify.classify_top(model, params, [str(p) for p in images], 4, reading=reading)
  assert sorted(reading.errors) == [1, 2] and scores.shape == (2, CLASSES)
  for record, row in zip(records, scores):
    np.testing.assert_allclose([t['probability'] for t in record['top']], np.sort(row)[::-1][:3], rtol=1e-5)


@pytest.mark.slow
def test_exif_orientation_is_applied_only_on_request(files, tmp_path):
  """A JPEG tagged orientation 6 classifies as its stored pixels by default and as the pixels turned 90 degrees
  clockwise with `exif_transpose` (both modes: top-N and multiscale)."""
  from overfeat_jax.data import images as images_lib  # pylint: disable=g-import-not-at-top
  exif = Image.Image().getexif()
  exif[images_lib.ORIENTATION_TAG] = 6
  tagged, stored, turned = tmp_path / 'tagged.jpg', tmp_path / 'stored.png', tmp_path / 'turned.png'
  tagged.write_bytes(photo_jpeg(260, 240, seed=1, exif=exif.tobytes()))
  pixels = Image.open(tagged).convert('RGB')
  pixels.save(stored)
  pixels.transpose(Image.Transpose.ROTATE_270).save(turned)  # 90 degrees clockwise
  model = OverFeat(FAST.scaled(16), num_classes=CLASSES)
  params = classify.load_params(str(files / 'fast16'), model.geometry, CLASSES)
  for fn in (classify.classify_top, lambda *a, **k: classify.classify_multiscale(*a, scales=[(231, 231)], **k)):
    got = fn(model, params, [str(tagged), str(tagged)], 2, reading=classify.Reading(exif_transpose=False))[0]
    want = fn(model, params, [str(stored)], 2)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    got = fn(model, params, [str(tagged)], 2, reading=classify.Reading(exif_transpose=True))[0]
    want = fn(model, params, [str(turned)], 2)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert not np.allclose(got, fn(model, params, [str(stored)], 2)[0], rtol=1e-5, atol=1e-7)


def test_cli_non_finite_outputs_are_errors_not_results(files, tmp_path):
  """Field case: a weights file of NaNs printed `nan` probabilities (with --json a bare NaN, which is not JSON)
  and exited 0. Now each image is named on one stderr line, nothing is printed for it, and the exit status is 2."""
  nan_file = tmp_path / 'nan16'
  size = (files / 'fast16').stat().st_size
  np.full(size // 4, np.nan, '<f4').tofile(nan_file)
  for mode in ([], ['--features']):
    result = run_cli(f'--weights={nan_file}', '--json', *mode, files / 'rgb.png')
    assert result.returncode == 2 and result.stdout == '', result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith('classify.py: error:')]
    assert len(errors) == 1 and 'are not finite numbers (NaN or inf)' in errors[0], result.stderr[-2000:]
    assert 'rgb.png' in errors[0] and 'Traceback' not in result.stderr


def test_cli_without_weights_warns_and_prints_release_lines(files):
  result = run_cli('--top=2', files / 'rgb.png')
  assert result.returncode == 0, result.stderr
  assert 'RANDOM weights' in result.stderr
  lines = result.stdout.splitlines()
  assert len(lines) == 2 and all(len(line.split()) == 2 and 0 <= float(line.split()[1]) <= 1 for line in lines)
  many = run_cli('--top=5000', files / 'rgb.png')  # more than there are classes: all, and a note says so
  assert many.returncode == 0 and len(many.stdout.splitlines()) == 10, many.stderr  # run_cli: 10 classes
  assert "note: --top=5000 is more than the network's 10 classes: printing all 10" in many.stderr


# --- class names -----------------------------------------------------------------------------------------
def test_synset_words_in_devkit_order_and_the_sorted_order_refused(tmp_path):
  from overfeat_jax.data import class_names  # pylint: disable=g-import-not-at-top
  (tmp_path / 'devkit_order.txt').write_text('n02119789 kit fox, Vulpes macrotis\nn02100735 English setter\n'
                                             'n02110185 Siberian husky\n')
  assert class_names.class_names(synset_words=str(tmp_path / 'devkit_order.txt'), num_classes=3) == [
      'kit fox, Vulpes macrotis', 'English setter', 'Siberian husky']
  (tmp_path / 'sorted.txt').write_text('n01440764 tench\nn01443537 goldfish\nn01484850 great white shark\n')
  with pytest.raises(classify.InputError, match='sorted WordNet-ID order'):
    class_names.class_names(synset_words=str(tmp_path / 'sorted.txt'), num_classes=3)
  with pytest.raises(classify.InputError, match='has 3 non-empty lines'):
    class_names.class_names(synset_words=str(tmp_path / 'devkit_order.txt'), num_classes=1000)
  assert class_names.class_names(num_classes=3) is None


def test_devkit_meta_mat_gives_the_leaves_in_id_order(tmp_path):
  import scipy.io  # pylint: disable=g-import-not-at-top
  from overfeat_jax.data import class_names  # pylint: disable=g-import-not-at-top
  dtype = [('ILSVRC2012_ID', 'O'), ('WNID', 'O'), ('words', 'O'), ('num_children', 'O')]
  rows = [(3, 'n02110185', 'Siberian husky', 0), (1, 'n02119789', 'kit fox', 0), (4, 'n00001740', 'entity', 5),
          (2, 'n02100735', 'English setter', 0)]
  synsets = np.array(rows, dtype=dtype)
  (tmp_path / 'data').mkdir()
  scipy.io.savemat(tmp_path / 'data' / 'meta.mat', {'synsets': synsets})
  assert class_names.class_names(devkit=str(tmp_path), num_classes=3) == ['kit fox', 'English setter',
                                                                         'Siberian husky']
  with pytest.raises(classify.InputError, match='lists 3 classification classes'):
    class_names.class_names(devkit=str(tmp_path / 'data' / 'meta.mat'), num_classes=4)
