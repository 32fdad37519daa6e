"""The predict CLI end to end: a real orbax checkpoint, JSON output, drawn PNGs, and one-line errors (exit 2)."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from overfeat_jax.checkpoint import manager as ckpt
from overfeat_jax.tasks import detection
from overfeat_jax.errors import InputError
from overfeat_jax.config_files import load_config as load_config_file
from overfeat_jax.config_files import save_config, settings_from_config
from tests.photos import photo_jpeg
from tests.entry_points import import_entry_point

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, 'experiments', 'configs', 'embedded_detection.py')


def load_config():
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location('det_config', CONFIG)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config('smoke')


def run_cli(*args, config=f'--config={CONFIG}:smoke'):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  flags = [config] if config else []
  return subprocess.run([sys.executable, '-m', 'overfeat_jax.predict', *flags, *args],
                        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  root = tmp_path_factory.mktemp('work')
  settings = settings_from_config(load_config(), 'detection')
  params = jax.jit(detection.make_task(settings).init_params)(jax.random.key(0))
  manager = ckpt.make_manager(str(root / 'detection' / 'checkpoints'), enable_async=False)
  ckpt.save(manager, 1, {'params': params}, {'task': 'detection'})
  manager.close()
  image = np.random.default_rng(0).integers(0, 256, (100, 140, 3), dtype=np.uint8)
  Image.fromarray(image).save(root / 'scene.png')
  return root


@pytest.mark.slow
def test_json_and_drawing(workdir):
  out_dir = workdir / 'drawn'
  r = run_cli(f'--workdir={workdir}', '--task=detection', '--json', f'--draw={out_dir}', str(workdir / 'scene.png'))
  assert r.returncode == 0, r.stderr[-2000:]
  (line,) = [l for l in r.stdout.splitlines() if l.startswith('{')]
  record = json.loads(line)
  assert record['task'] == 'detection' and (record['height'], record['width']) == (100, 140)
  for p in record['predictions']:
    x1, y1, x2, y2 = p['box']
    assert 0 <= x1 <= x2 <= 140 and 0 <= y1 <= y2 <= 100 and 0 <= p['score']
  drawn = Image.open(out_dir / 'scene_detection.png')
  assert drawn.size[0] >= 140 and drawn.size[0] / drawn.size[1] == pytest.approx(1.4)
  assert 'replaced' not in r.stderr, r.stderr[-2000:]
  assert 'random initialisation' not in r.stderr  # the trainer's cold-start warning is not predict's business
  again = run_cli(f'--workdir={workdir}', '--task=detection', f'--draw={out_dir}', str(workdir / 'scene.png'))
  assert again.returncode == 0, again.stderr[-2000:]
  notes = [l for l in again.stderr.splitlines() if ': note: ' in l]  # a rerun replaces, and says so
  assert notes == [f'predict.py: note: replaced 1 earlier output: {out_dir / "scene_detection.png"}'], notes


@pytest.mark.parametrize('args,message', [
    (['--task=detection', 'missing.png'], 'does not exist'),
    (['--task=detection'], 'at least one image'),
    (['--task=localization', 'x.png'], 'no checkpoint directory'),
    (['--workdir={missing}', '--task=detection', 'x.png'], 'missing does not exist: give the training run'),
    # Another stage's checkpoints: a KeyError traceback ('backbone') before names and shapes were compared.
    (['--task=classification', '--checkpoint={det}', 'x.png'],
     "does not match the classification stage's network: params/"),
])
def test_bad_input_is_one_line_exit_2(workdir, args, message):
  args = [a if a != 'x.png' else str(workdir / 'scene.png') for a in args]
  args = [a.format(det=workdir / 'detection' / 'checkpoints', missing=workdir / 'missing') for a in args]
  r = run_cli(*([] if any(a.startswith('--workdir') for a in args) else [f'--workdir={workdir}']), *args)
  assert r.returncode == 2, r.stderr[-2000:]
  last = r.stderr.strip().splitlines()[-1]
  assert message in last and 'Traceback' not in r.stderr


def test_saved_config_round_trips(tmp_path):
  config = load_config()
  save_config(config, str(tmp_path))
  loaded = load_config_file(str(tmp_path))
  assert loaded.to_dict() == config.to_dict()  # tuples stay tuples, nested sections stay sections
  assert load_config_file(str(tmp_path / 'none')) is None


def test_corrupt_saved_config_is_one_line(tmp_path):
  (tmp_path / 'config.json').write_text('{"stages": [')
  with pytest.raises(InputError, match='cannot read the training config'):
    load_config_file(str(tmp_path))


def test_without_config_or_saved_config_exit_2(workdir):
  r = run_cli(f'--workdir={workdir}', '--task=detection', str(workdir / 'scene.png'), config=None)
  assert r.returncode == 2, r.stderr[-2000:]
  last = r.stderr.strip().splitlines()[-1]
  assert 'config.json' in last and '--config' in last and 'Traceback' not in r.stderr


@pytest.mark.slow
def test_saved_config_is_used_without_flag(workdir, tmp_path):
  run = tmp_path / 'run'
  run.mkdir()
  os.symlink(workdir / 'detection', run / 'detection')
  save_config(load_config(), str(run))
  r = run_cli(f'--workdir={run}', '--task=detection', '--json', str(workdir / 'scene.png'), config=None)
  assert r.returncode == 0, r.stderr[-2000:]
  (line,) = [l for l in r.stdout.splitlines() if l.startswith('{')]
  assert json.loads(line)['task'] == 'detection'


@pytest.mark.slow
def test_many_inputs_every_good_one_drawn_under_its_own_name_each_bad_one_named(workdir, tmp_path):
  """Equal stems in two folders get two drawings; a JPEG 20 bytes short is kept; one cut in half and a missing
  file are named on one stderr line each; the command exits 2 after the rest."""
  for folder in ('a', 'b'):
    (tmp_path / folder).mkdir()
    (tmp_path / folder / 'x.png').write_bytes((workdir / 'scene.png').read_bytes())
  data = photo_jpeg(200, 150, seed=1)
  (tmp_path / 'short.jpg').write_bytes(data[:-20])
  (tmp_path / 'half.jpg').write_bytes(data[:len(data) // 2])
  inputs = [tmp_path / 'a' / 'x.png', tmp_path / 'half.jpg', tmp_path / 'b' / 'x.png', tmp_path / 'missing.jpg',
            tmp_path / 'short.jpg']
  out = tmp_path / 'drawn'
  r = run_cli(f'--workdir={workdir}', '--task=detection', '--json', f'--draw={out}', *map(str, inputs))
  assert r.returncode == 2 and 'Traceback' not in r.stderr, r.stderr[-2000:]
  errors = [l for l in r.stderr.splitlines() if ': error: ' in l]
  assert len(errors) == 2 and 'half.jpg' in errors[0] and 'rows are missing' in errors[0], errors
  assert 'missing.jpg' in errors[1] and 'does not exist' in errors[1], errors
  records = [json.loads(l) for l in r.stdout.splitlines() if l.startswith('{')]
  assert [os.path.basename(x['image']) for x in records] == ['x.png', 'half.jpg', 'x.png', 'missing.jpg',
                                                             'short.jpg']
  assert ['error' in x for x in records] == [False, True, False, True, False]
  assert (records[4]['height'], records[4]['width']) == (150, 200)
  assert sorted(os.listdir(out)) == ['a_x_detection.png', 'b_x_detection.png', 'short_detection.png']


def test_the_same_file_twice_is_refused_before_any_work(workdir, tmp_path):
  image = str(workdir / 'scene.png')
  r = run_cli(f'--workdir={workdir}', '--task=detection', f'--draw={tmp_path / "out"}', image,
              os.path.join(os.path.dirname(image), '.', 'scene.png'))
  assert r.returncode == 2, r.stderr[-2000:]
  assert 'given twice' in r.stderr.strip().splitlines()[-1] and not (tmp_path / 'out').exists()


@pytest.mark.slow
def test_exif_orientation_is_applied_only_on_request(workdir, tmp_path):
  """A 150x200 (HxW) JPEG tagged orientation 6: stored pixels by default, a 200x150 image with boxes inside it
  with `--exif_transpose`. (A subprocess: importing predict here would define its flags a second time.)"""
  from overfeat_jax.data import images  # pylint: disable=g-import-not-at-top
  exif = Image.Image().getexif()
  exif[images.ORIENTATION_TAG] = 6
  path = tmp_path / 'phone.jpg'
  path.write_bytes(photo_jpeg(200, 150, seed=1, exif=exif.tobytes()))
  records = []
  for flag in ('--noexif_transpose', '--exif_transpose'):
    r = run_cli(f'--workdir={workdir}', '--task=detection', '--json', flag, str(path))
    assert r.returncode == 0, r.stderr[-2000:]
    records += [json.loads(l) for l in r.stdout.splitlines() if l.startswith('{')]
  plain, turned = records
  assert (plain['height'], plain['width']) == (150, 200) and (turned['height'], turned['width']) == (200, 150)
  for p in turned['predictions']:
    x1, y1, x2, y2 = p['box']
    assert 0 <= x1 <= x2 <= 150 and 0 <= y1 <= y2 <= 200


@pytest.mark.slow
def test_predict_is_the_tasks_predictor_mapped_to_the_image():
  """predict runs the localization task's own predictor (the function its evaluation step calls) on the
  `resize` view, then scales its boxes from the view's pixels to the image's and keeps `top` guesses."""
  predict = import_entry_point('predict')
  from overfeat_jax.data.preprocess import eval_view  # pylint: disable=g-import-not-at-top
  stage = predict.stage_task(load_config(), 'localization')
  size = stage.predictor_size
  assert stage.name == 'localization' and size == stage.settings.box.eval_size
  params = jax.jit(stage.init_params)(jax.random.key(1))
  image = np.random.default_rng(2).integers(0, 256, (100, 140, 3), dtype=np.uint8)
  preds = predict.predict_one(stage, jax.jit(stage.predictor), params, image, top=2)
  (evaluation,) = stage.evaluations
  view, _ = eval_view(image, 'resize', size)
  out = jax.jit(evaluation.eval_step)(params, {'image': view[None], 'boxes': np.zeros((1, 1, 4), np.float32),
                                               'box_labels': np.full((1, 1), -1, np.int32)})
  scale = np.array([140 / size, 100 / size] * 2)
  want = [(int(c), np.clip(np.asarray(b, np.float64) * scale, 0, [140, 100, 140, 100]))
          for c, b in zip(np.asarray(out['classes'][0]), np.asarray(out['boxes'][0])) if c >= 0][:2]
  assert len(preds) == len(want) == 2
  for p, (cls, box) in zip(preds, want):
    assert p['class'] == cls
    np.testing.assert_allclose(p['box'], box, rtol=0, atol=0.011)  # predict rounds to 2 decimals
