"""`config.init`: layers 1-5 (or more) from a workdir, an artifact or a release file give the source's outputs;
frozen layers stay bit for bit, fine-tuned ones move; bad sources are one clear error."""

import dataclasses
import functools
import os
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest

from overfeat_jax.checkpoint import export as export_lib
from overfeat_jax.checkpoint import manager as ckpt
from overfeat_jax.checkpoint import transfer
from overfeat_jax.config_files import settings_from_config
from overfeat_jax.errors import InputError
from overfeat_jax.models import release_weights
from overfeat_jax.models.geometry import get_geometry
from overfeat_jax.tasks import classification, detection
from overfeat_jax.train import loop
from overfeat_jax.train import state as state_lib
from overfeat_jax.train import step as step_lib
from tests.sweeps import checkpoints
from tests.train.helpers import REPO, load_config, random_batch

SMALL = get_geometry('small', 32)  # the smoke config's network


@pytest.fixture(scope='module')
def smoke():
  return load_config('embedded', 'smoke')


def _classifier_task(config):
  """The smoke config's classification task, its random init drawn with numpy (`checkpoints.make_params`, seed
  11): the transfer wraps whatever `init_params` a task has, and compiling flax's init costs tens of seconds on
  a loaded 2-core machine."""
  task = classification.make_task(settings_from_config(config, 'classification'))
  return dataclasses.replace(task, init_params=lambda rng: checkpoints.make_params(11))


def _source(kind, tmp_path, params):
  """Writes `params` as a workdir checkpoint, an artifact or a release-layout file; returns its path."""
  if kind == 'workdir':
    return checkpoints.write_checkpoint(str(tmp_path / 'run'), 'classification', params, step=5)
  if kind == 'artifact':
    cfg = export_lib.build_config(export_lib.infer_network(params), stage='classification')
    return export_lib.write_artifact(str(tmp_path / 'artifact'), params, cfg)
  path = str(tmp_path / 'net_weight')
  release_weights.save_release_weights(params, SMALL, path)
  return path


def _layer5(model, params, images):
  """Layer 5 before the offset pooling [B, h, w, C5], jitted (one compile per model and image shape)."""
  return np.asarray(_jitted(model, 'unpooled')(params, images))


def _scores(model, params, images):
  return np.asarray(_jitted(model, '__call__')(params, images))


_JITTED = {}


def _jitted(model, method):
  if (model, method) not in _JITTED:
    _JITTED[model, method] = jax.jit(lambda p, x: model.apply({'params': p}, x, method=getattr(model, method)))
  return _JITTED[model, method]


@pytest.mark.parametrize('kind', ['workdir', 'artifact', 'release'])
def test_loaded_layers_give_the_source_networks_outputs(kind, smoke, tmp_path):
  classes = 1000 if kind == 'release' else 10  # the release layout has the release's 1000 outputs
  params = checkpoints.make_params(seed=3, num_classes=classes)
  source = transfer.load_source(_source(kind, tmp_path, params), geometry=SMALL)
  jax.tree.map(np.testing.assert_array_equal, source.params, params)  # read back bit for bit
  task = _classifier_task(smoke)
  images = np.random.default_rng(0).integers(0, 256, (2, 72, 88, 3), dtype=np.uint8)
  fresh = task.init_params(jax.random.key(1))
  assert not np.array_equal(_layer5(task.model, fresh, images), _layer5(task.model, params, images))
  # Every selection once (each is a compile of the init): on the artifact; layers 1-5 from the others.
  for layers in ('features', 'hidden', 'all') if kind == 'artifact' else ('features',):
    loaded = transfer.initialise(task, source, layers=layers).initial_params(jax.random.key(1))
    np.testing.assert_array_equal(_layer5(task.model, loaded, images), _layer5(task.model, params, images))
    fc6 = loaded['classifier']['fc6']['kernel']
    assert np.array_equal(fc6, params['classifier']['fc6']['kernel']) == (layers != 'features')
    if layers == 'all':  # the whole classifier: the score maps too
      np.testing.assert_array_equal(_scores(task.model, loaded, images), _scores(task.model, params, images))
    else:  # the output layer is the task's own initialisation
      np.testing.assert_array_equal(loaded['classifier']['fc8']['kernel'], fresh['classifier']['fc8']['kernel'])


def test_a_first_detection_stage_gets_the_backbone_from_a_classifier(smoke, tmp_path):
  params = checkpoints.make_params(seed=5)
  source = transfer.load_source(_source('artifact', tmp_path, params), geometry=SMALL)
  task = detection.make_task(settings_from_config(smoke, 'detection'))  # 11 outputs: 10 classes + background
  warm = transfer.initialise(task, source, layers='hidden')
  # The trainer warns of a cold start only when nothing warm-starts the stage: it warned here too (field case),
  # from inside the init, which also ran for `predict`.
  assert task.warm_start is None and 'random initialisation' in task.cold_start and warm.warm_start is not None
  loaded = warm.warm_start(jax.jit(warm.init_params)(jax.random.key(0)))  # the copy runs outside jit
  backbone = loaded['backbone']
  images = np.random.default_rng(1).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
  classifier = task.model.classifier
  np.testing.assert_array_equal(_layer5(classifier, backbone, images), _layer5(classifier, params, images))
  np.testing.assert_array_equal(backbone['classifier']['fc7']['kernel'], params['classifier']['fc7']['kernel'])
  assert backbone['classifier']['fc8']['kernel'].shape[-1] == 11 and 'regressor' in loaded
  with pytest.raises(InputError, match=r"classifier/fc8/kernel has shape \(1, 1, 128, 10\) there but \(1, 1, 128, 11\) .*'hidden'"):
    transfer.initialise(task, source, layers='all')


@pytest.mark.slow
def test_frozen_layers_do_not_change_and_fine_tuned_ones_do(smoke, tmp_path):
  """Two compiles of the loop's train step (frozen, fine-tuned): about 25 CPU-seconds."""
  params = checkpoints.make_params(seed=7)
  source = transfer.load_source(_source('artifact', tmp_path, params), geometry=SMALL)
  batches = [random_batch(i, 4, 64, 10) for i in range(3)]
  for freeze in (True, False):
    task = transfer.initialise(_classifier_task(smoke), source, layers='features', freeze=freeze)
    tx, schedule = loop.build_optimizer(smoke, task, steps_per_epoch=4, total_steps=3)
    rng = jax.random.key(0)
    state = state_lib.create(task.initial_params(rng), tx, rng)
    start = jax.tree.map(np.asarray, state.params)
    train_fn = jax.jit(functools.partial(step_lib.train_step, loss_fn=task.loss_fn, tx=tx, schedule=schedule,
                                         skip_nonfinite=False))  # the loop's step, on one device
    for batch in batches:
      state, metrics = train_fn(state, batch)
    assert np.isfinite(float(metrics['loss']))
    end = jax.tree.map(np.asarray, state.params)
    for name in ('conv1', 'conv5'):
      for leaf in ('kernel', 'bias'):
        same = np.array_equal(end['features'][name][leaf], start['features'][name][leaf])
        assert same == freeze, (freeze, name, leaf)
    assert not np.array_equal(end['classifier']['fc8']['kernel'], start['classifier']['fc8']['kernel'])
    if freeze:  # frozen parameters carry no optimizer state at all
      labels = task.trainable_mask(state.params)
      assert not any(jax.tree.leaves(labels['features'])) and all(jax.tree.leaves(labels['classifier']))


def _save(manager, step, params, metrics):
  state = state_lib.create(params, optax.adam(1e-3), jax.random.key(0)).replace(step=np.int32(step))
  ckpt.save(manager, step, state, {'data': '', 'task': 'classification'}, metrics)


def test_workdir_checkpoint_latest_step_or_best(tmp_path):
  workdir = str(tmp_path / 'run')
  manager = ckpt.make_manager(os.path.join(workdir, 'classification', 'checkpoints'), max_to_keep=3,
                              best_metric='center_crop/top1_error', enable_async=False)
  versions = {2: (checkpoints.make_params(seed=2), 0.4), 4: (checkpoints.make_params(seed=4), 0.2),
              6: (checkpoints.make_params(seed=6), 0.3)}
  for step, (params, error) in versions.items():
    _save(manager, step, params, {'center_crop/top1_error': error})
  manager.wait_until_finished()
  manager.close()
  for kwargs, step in (({}, 6), ({'step': 2}, 2), ({'best': True}, 4)):
    source = transfer.load_source(workdir, geometry=SMALL, **kwargs)
    assert f'classification step {step}' in source.description
    jax.tree.map(np.testing.assert_array_equal, source.params, versions[step][0])
  with pytest.raises(InputError, match="no classification checkpoint .* has a saved 'other'"):
    transfer.load_source(workdir, geometry=SMALL, best=True, metric='other')


def test_bad_sources_are_one_clear_error(smoke, tmp_path):
  task = classification.make_task(settings_from_config(smoke, 'classification'))
  with pytest.raises(InputError, match='does not exist'):
    transfer.load_source(str(tmp_path / 'nothing'), geometry=SMALL)
  with pytest.raises(InputError, match='no classification checkpoint'):
    transfer.load_source(str(tmp_path), geometry=SMALL)
  (tmp_path / 'short').write_bytes(b'\0' * 400)
  with pytest.raises(InputError, match='has 400 bytes but the small/32 network'):
    transfer.load_source(str(tmp_path / 'short'), geometry=SMALL)
  wide = checkpoints.make_params(seed=1, divisor=16)  # twice as wide: every layer differs
  source = transfer.Source(wide, 'artifact x')
  with pytest.raises(InputError, match=r'layer features/conv1/kernel has shape \(7, 7, 3, 6\) there but '
                                       r'\(7, 7, 3, 3\) in the configured network \(config.model'):
    transfer.initialise(task, source)
  with pytest.raises(InputError, match='init.layers must be one of'):
    transfer.initialise(task, transfer.Source(checkpoints.make_params(0), 'x'), layers='conv')


def _main(*args):
  env = {'JAX_PLATFORMS': 'cpu', 'PATH': '/usr/bin:/bin'}
  return subprocess.run([sys.executable, '-m', 'overfeat_jax.main', '--config=experiments/configs/embedded.py:smoke',
                         *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_cli_bad_sources_exit_2_with_one_line_before_reading_data(tmp_path):
  wide = checkpoints.make_params(seed=1, divisor=16)
  artifact = _source('artifact', tmp_path, wide)
  cases = [(str(tmp_path / 'nothing'), 'does not exist'),
           (artifact, 'layer features/conv1/kernel has shape (7, 7, 3, 6) there but (7, 7, 3, 3)')]
  for source, message in cases:
    out = _main(f'--workdir={tmp_path / "run"}', f'--config.init.source={source}',
                '--config.data.data_dir=/nonexistent')  # nothing is read: the data would be an error too
    assert out.returncode == 2, out.stderr[-3000:]
    assert message in out.stderr.strip().splitlines()[-1] and 'Traceback' not in out.stderr, out.stderr[-2000:]


@pytest.mark.slow
def test_cli_training_from_an_artifact_keeps_frozen_layers(tmp_path, data_dir):
  """`main` end to end (smoke classification, 6 steps): layers 1-5 from an artifact, frozen; the classifier
  trains. About a minute on 2 busy cores."""
  params = checkpoints.make_params(seed=9)
  artifact = _source('artifact', tmp_path, params)
  workdir = tmp_path / 'run'
  out = _main(f'--workdir={workdir}', f'--config.data.data_dir={data_dir}', "--config.stages=('classification',)",
              f'--config.init.source={artifact}', '--config.init.freeze=True')
  assert out.returncode == 0, out.stderr[-3000:]
  step, trained = export_lib.load_trained(str(workdir), 'classification')
  assert step == 6
  jax.tree.map(np.testing.assert_array_equal, trained['features'], params['features'])
  assert not np.array_equal(trained['classifier']['fc8']['kernel'], params['classifier']['fc8']['kernel'])
