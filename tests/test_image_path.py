"""One image path (issue #16 item 4): the same image and settings give the same class scores in every tool.

The four ways a trained classifier scores an image with the multi-scale procedure (paper section 3.3):
the trainer's evaluation (the classification task's `multiscale` evaluation step on the eval pipeline's
`resize` view of an eval record), `sweep` (the sweeps runner's batches and dense point), `predict` (its
predictor on a decoded file) and `classify --multiscale` (its function on the same file). The image is a
310x230 photo-like JPEG, large enough that a DCT-domain draft (libjpeg's 1/2, 1/4, 1/8 decode) would apply to
its 72-px view; the network is the embedded smoke config's at random initialisation.

Before the one image path (tree at 6857686, this image and network): the trainer and `sweep` agreed exactly
(both DCT draft + bilinear view), `predict` (bilinear view, no draft) differed from them by up to 7.6e-3 in a
class score and `classify --multiscale` (bicubic, each scale straight from the file) by up to 1.27e-2, with
scores of 0.03-0.41. Now every tool decodes with Pillow, resizes the file to the view with `images.resize`
(`preprocess.eval_view`) and each scale from it on the device, so they agree to float rounding.
"""

import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from overfeat_jax.checkpoint import export as export_lib
from overfeat_jax.checkpoint import manager as ckpt
from overfeat_jax.config_files import input_settings, settings_from_config, stage_config
from overfeat_jax.data import images as images_lib
from overfeat_jax.data import pipeline
from overfeat_jax.inference import multiscale
from overfeat_jax.models import release_weights
from overfeat_jax.models.geometry import get_geometry
from overfeat_jax.sweeps import grid, runner
from overfeat_jax.tasks import classification
from tests.entry_points import import_entry_point

predict = import_entry_point('predict')
from overfeat_jax.train import inputs
from tests.photos import photo, photo_jpeg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Different jitted programs (batch 1 vs 4 vs 16, one or several calls) round float32 differently: ~1e-7 measured.
ATOL = 1e-5


def smoke_config() -> ml_collections.ConfigDict:
  spec = importlib.util.spec_from_file_location('image_path_config',
                                                os.path.join(ROOT, 'experiments', 'configs', 'embedded.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config('smoke')


@pytest.fixture(scope='module')
def setting(tmp_path_factory):
  config = smoke_config()
  cfg = stage_config(config, 'classification')
  task = classification.make_task(settings_from_config(config, 'classification'))
  params = jax.jit(task.init_params)(jax.random.key(0))
  root = tmp_path_factory.mktemp('image_path')
  path = root / 'photo.jpg'
  data = photo_jpeg(310, 230, seed=3)
  path.write_bytes(data)
  # An eval record as the tfds source gives it to the pipeline (encoded bytes, not decoded).
  record = {'image': data, 'label': np.int64(3), 'boxes': np.zeros((0, 4), np.float32),
            'box_labels': np.zeros((0,), np.int64)}
  return config, cfg, task, params, root, str(path), [record]


def trainer_scores(cfg, task, params, source) -> np.ndarray:
  (evaluation,) = [e for e in task.evaluations if e.name == 'multiscale']
  batches, _, _ = inputs.eval_batches(input_settings(cfg, 'classification'), source, evaluation.view, evaluation.size)
  batch = next(iter(batches))
  return np.asarray(jax.jit(evaluation.eval_step)(params, batch)['scores'])[0]


def sweep_scores(cfg, params, source, monkeypatch) -> np.ndarray:
  monkeypatch.setattr(pipeline, 'open_source', lambda *args, **kwargs: source)
  setup = runner.make_setup(grid.Sweep(task='classification', batch_size=4), cfg.to_dict())
  network = runner.Network('smoke', 'test', export_lib.infer_network(params), params)
  point = grid.Point(view='dense', num_scales=len(setup.scales), fine=cfg.eval.fine, flips=cfg.eval.flips)
  fn = jax.jit(runner.outputs_fn(point, runner.point_tasks(point, [network], setup)))
  batch = next(runner.eval_batches(setup))
  return np.asarray(fn([params], {k: jnp.asarray(v) for k, v in batch.items()})['scores'])[0]


def predict_scores(config, cfg, params, root, path) -> np.ndarray:
  workdir = root / 'work'
  manager = ckpt.make_manager(str(workdir / 'classification' / 'checkpoints'), enable_async=False)
  ckpt.save(manager, 1, {'params': params}, {'task': 'classification'})
  manager.close()
  (record,) = predict.predict_files([path], task='classification', config=config, workdir=str(workdir),
                                    top=cfg.num_classes)
  scores = np.zeros(cfg.num_classes, np.float32)
  for p in record['predictions']:
    scores[p['class']] = p['score']
  return scores


# classify and predict both define absl flags (--json), so classify runs in its own process, as the command
# does: the network saved in the release layout and read back by classify's own loader.
CLASSIFY = """
import json, sys
from overfeat_jax import classify
geometry, divisor, classes, weights, path, scales, flips, view = json.loads(sys.argv[1])
model = classify.make_network(geometry, classes, divisor)
params = classify.load_params(weights, model.geometry, classes)
scores = classify.classify_multiscale(model, params, [path], 4, [tuple(s) for s in scales], flips, view_size=view)
print(json.dumps(scores[0].tolist()))
"""


def classify_scores(cfg, params, root, path) -> np.ndarray:
  geometry = get_geometry(cfg.model.geometry, cfg.model.width_divisor)
  weights = str(root / 'weights')
  release_weights.save_release_weights(jax.device_get(params), geometry, weights)
  args = [cfg.model.geometry, cfg.model.width_divisor, cfg.num_classes, weights, path,
          [(s, s) for s in cfg.eval.scales], cfg.eval.flips, cfg.eval.resize]
  r = subprocess.run([sys.executable, '-c', CLASSIFY, json.dumps(args)], capture_output=True, text=True, cwd=ROOT,
                     env=dict(os.environ, JAX_PLATFORMS='cpu'), timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  return np.asarray(json.loads(r.stdout.strip().splitlines()[-1]), np.float32)


def test_trainer_sweep_predict_and_classify_give_the_same_scores(setting, monkeypatch):
  config, cfg, task, params, root, path, source = setting
  assert cfg.eval.fine and cfg.eval.flips and len(cfg.eval.scales) == 2  # the smoke config's procedure
  trainer = trainer_scores(cfg, task, params, source)
  assert trainer.shape == (cfg.num_classes,) and abs(trainer.sum() - 1) > 1e-3  # per-class maxima, not one softmax
  got = {'sweep': sweep_scores(cfg, params, source, monkeypatch),
         'predict': predict_scores(config, cfg, params, root, path),
         'classify --multiscale': classify_scores(cfg, params, root, path)}
  for tool, scores in got.items():
    np.testing.assert_allclose(scores, trainer, rtol=0, atol=ATOL, err_msg=f'{tool} vs the trainer')


def test_host_and_device_resize_are_one_filter():
  """`images.resize` (host, uint8) and `multiscale.resize_images` (device, float32) agree to the host's
  rounding when shrinking and enlarging: triangle filter, antialiased when shrinking. Pillow computes 8-bit
  images in fixed point, so its error is up to 1 grey level, not 0.5 (measured: max 1.0, mean 0.3)."""
  image = photo(150, 110, seed=5)
  for size in ((72, 72), (40, 64), (160, 200), (110, 150)):
    host = np.asarray(images_lib.resize(image, size), np.float32)
    device = np.asarray(multiscale.resize_images(jnp.asarray(image)[None], size))[0]
    assert host.shape == device.shape == size + (3,)
    np.testing.assert_allclose(host, device, rtol=0, atol=1.0 + 1e-3, err_msg=str(size))


def test_the_view_is_the_one_resize_of_the_decoded_file(setting):
  """The eval pipeline's `resize` view of a JPEG record is `images.resize` of its Pillow decode (no DCT draft)."""
  _, cfg, _, _, _, path, source = setting
  batches, _, _ = inputs.eval_batches(input_settings(cfg, 'classification'), source, 'resize', cfg.eval.resize)
  view = next(iter(batches))['image'][0]
  want = images_lib.resize(images_lib.load_rgb(path), (cfg.eval.resize, cfg.eval.resize))
  np.testing.assert_array_equal(view, want)


# Every place in the package that resamples pixels, and why it may (docs/ARCHITECTURE.md "One image path").
RESAMPLING_SITES = {
    'data/images.py': 'the one host resize (RESAMPLE) and the builders\' stored-record resize (BUILD_RESAMPLE)',
    'data/preprocess.py': 'the DCT draft of training crops (the resize itself is images.resize)',
    'inference/multiscale.py': 'the device half: each scale from the view, the same triangle filter',
    'data/draw.py': 'the embedded dataset\'s synthetic textures (how its records are made: a data format)',
    'data/embedded.py': 'nearest-neighbour zoom of a preview sheet (show_embedded), never a network input',
    'inference/draw.py': 'nearest-neighbour zoom of predict\'s drawings, never a network input',
}


def test_no_other_resampling_site():
  """A new resize (Pillow `.resize(`, a Pillow filter, `jax.image.resize`, `draft(`) anywhere else in the
  package fails here: route it through `images.resize` / `preprocess.eval_view` instead."""
  pattern = re.compile(r'\.resize\(|jax\.image\.(resize|scale_and_translate)|Image\.(Resampling|BILINEAR|BICUBIC|'
                       r'LANCZOS|NEAREST|BOX|HAMMING)|\.draft\(|\.thumbnail\(')
  package = pathlib.Path(ROOT) / 'overfeat_jax'
  found = set()
  for path in package.rglob('*.py'):
    for line in path.read_text().splitlines():
      code = line.split('#', 1)[0]
      if pattern.search(code) and 'images_lib.resize(' not in code:
        found.add(path.relative_to(package).as_posix())
  assert found == set(RESAMPLING_SITES)
