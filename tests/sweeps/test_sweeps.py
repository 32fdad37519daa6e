"""Sweeps: grid expansion from the configs, cost accounting, resumable runs on real tiny checkpoints, report."""

import dataclasses
import hashlib
import importlib.util
import json
import os
import subprocess
import sys

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from overfeat_jax import config_files
from overfeat_jax.checkpoint.export import NetworkSpec
from overfeat_jax.errors import InputError
from overfeat_jax.inference import ensemble
from overfeat_jax.settings import as_sizes
from overfeat_jax.sweeps import grid, report, runner
from tests.sweeps import checkpoints

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SWEEPS = os.path.join(REPO, 'experiments', 'configs', 'sweeps')


def load_sweep(name: str) -> grid.Sweep:
  """A shipped sweep config read as the entry point reads it (plain values)."""
  spec = importlib.util.spec_from_file_location(f'sweep_{name}', os.path.join(SWEEPS, f'{name}.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return grid.Sweep.from_dict(module.get_config().to_dict())


def test_classification_grid_expands_axes_points_and_models():
  sweep = load_sweep('classification_embedded')
  points = grid.expand(sweep, num_models=2, num_scales=6)
  dense = [p for p in points if p.view == 'dense' and p.models == (0,) and not p.name]
  assert len(dense) == 16  # 4 scale counts x coarse/fine x flips off/on
  assert {(p.num_scales, p.fine, p.flips) for p in dense} == {
      (n, f, fl) for n in (1, 2, 4, 6) for f in (False, True) for fl in (False, True)}
  # 'each network' at 4 scales duplicates the grid point of network 0: only network 1's point is added.
  assert [p.models for p in points if p.name == 'each network'] == [(1,)]
  assert [p.models for p in points if p.name == 'ensemble'] == [(0, 1)]
  ten = [p for p in points if p.view == 'ten_crop']
  assert {p.models for p in ten} == {(0,), (1,), (0, 1)} and all(p.num_scales == 0 for p in ten)
  assert len(points) == 22
  # One network: no ensemble rows, no second network.
  assert all(p.models == (0,) for p in grid.expand(sweep, num_models=1, num_scales=6))
  keys = {p.key(('a', 'b'), 'ctx') for p in points}
  assert len(keys) == len(points)
  assert points[0].key(('a', 'b'), 'ctx') != points[0].key(('c', 'b'), 'ctx')  # another checkpoint: recomputed


@pytest.mark.parametrize('name, models', [('localization_embedded', 1), ('detection_embedded', 1),
                                          ('classification_imagenet', 2)])
def test_other_sweep_configs_expand(name, models):
  sweep = load_sweep(name)
  points = grid.expand(sweep, num_models=models, num_scales=len(sweep.scales) or 6)
  assert len(points) >= 5
  if 'imagenet' in name:  # every network on the grid: fast and accurate rows
    assert {p.models for p in points if p.view == 'dense' and not p.name} == {(0,), (1,)}
  else:
    assert {p.merge for p in points} >= {'overlap', 'literal', 'nms'} and not any(p.flips for p in points)


@pytest.mark.parametrize('change, message', [
    (dict(grid={'colour': ('red',)}), 'unknown field'), (dict(grid={'num_scales': (7,)}), 'num_scales'),
    (dict(points={'x': {'view': 'twelve'}}), 'view'), (dict(points={'x': {'models': 'all'}}), 'models'),
    (dict(points={'x': {'average': 'median'}}), 'average')])
def test_bad_sweep_definitions_are_refused(change, message):
  sweep = dataclasses.replace(load_sweep('classification_embedded'), grid=change.get('grid', {'flips': (True,)}),
                              points=change.get('points', {}))
  with pytest.raises(InputError, match=message):
    grid.expand(sweep, num_models=1, num_scales=4)


def test_sweep_fields_and_tasks_are_checked_when_read():
  with pytest.raises(InputError, match='unknown sweep field'):
    grid.Sweep.from_dict({'task': 'classification', 'colour': 'red'})
  with pytest.raises(InputError, match='sweep task must be one of'):
    grid.Sweep.from_dict({'task': 'segmentation'})


def test_an_unbuilt_embedded_dataset_is_built_for_the_evaluation_split_only(tmp_path):
  """The sweep reads the evaluation split only: an embedded dataset not built yet is built with 1 training image
  (not 10,000), and its evaluation images are those of the full build."""
  from overfeat_jax.data import embedded  # pylint: disable=g-import-not-at-top
  options = dict(train_size=40, test_size=5, image_size=56, max_size=40)
  setup = runner.EvalSetup('classification', 56, ((56, 56),), 56, 4, 0, dict(
      name='embedded_cls_loc', split='test', data_dir=str(tmp_path / 'fresh'), options=options, max_boxes=2), {})
  fresh = [b['image'][b['mask']] for b in runner.eval_batches(setup)]
  assert not embedded.is_built(str(tmp_path / 'fresh'), 'cls_loc', **options)  # the training split was not built
  assert embedded.is_built(str(tmp_path / 'fresh'), 'cls_loc', **{**options, 'train_size': 1})
  embedded.build_embedded(str(tmp_path / 'full'), 'cls_loc', **options)  # built by a training run: read as it is
  full = [b['image'][b['mask']] for b in runner.eval_batches(
      dataclasses.replace(setup, data={**setup.data, 'data_dir': str(tmp_path / 'full')}))]
  assert not embedded.is_built(str(tmp_path / 'full'), 'cls_loc', **{**options, 'train_size': 1})
  np.testing.assert_array_equal(np.concatenate(fresh), np.concatenate(full))
  assert len(np.concatenate(full)) == 5


def test_shipped_sweeps_name_their_training_config_by_module_path(tmp_path, monkeypatch):
  """No path relative to the repository: the training config is found from any working directory (a wheel)."""
  monkeypatch.chdir(tmp_path)
  for name in ('classification_embedded', 'localization_embedded', 'detection_embedded',
               'classification_imagenet'):
    sweep = load_sweep(name)
    assert not sweep.train_config.endswith('.py')
    shipped = config_files.module_file(f'overfeat_jax.configs.sweeps.{name}')  # in the package (a wheel has it)
    assert os.path.samefile(shipped, os.path.join(SWEEPS, f'{name}.py'))
    train = runner.load_train_config(sweep.train_config)
    assert isinstance(train, dict) and train['data']['eval_split']
  with pytest.raises(InputError, match='no config module'):
    runner.load_train_config('overfeat_jax.configs.nothing_here')
  with pytest.raises(InputError, match='not found'):
    runner.load_train_config('missing.py:smoke')


@pytest.mark.parametrize('name', ['classification_embedded', 'localization_embedded', 'detection_embedded'])
def test_a_workdir_is_evaluated_on_its_own_data_unless_the_sweep_says_otherwise(tmp_path, name):
  """An H8 finding: the sweep on a smoke workdir built the full 30,000-image dataset its train_config names,
  instead of reading the 16-image test split the workdir was trained and evaluated on (its config.json)."""
  smoke = config_files.load_file(os.path.join(REPO, 'experiments', 'configs', 'embedded.py'), 'smoke_config')
  config = smoke.get_config('smoke')
  config.data.data_dir = str(tmp_path / 'smoke_data')  # never built here: nothing is read before the points
  config_files.save_config(config, str(tmp_path))
  sweep = load_sweep(name)
  lines = []
  setup = runner.workdir_setup(sweep, str(tmp_path), log=lines.append)
  stage = config_files.stage_config(config, sweep.task).data  # detection: the det view, its own sizes
  assert setup.data['data_dir'] == str(tmp_path / 'smoke_data') and setup.data['options'] == dict(stage.options)
  assert setup.data['split'] == 'test' and setup.data['options']['test_size'] == 16
  assert lines == [f'data: {stage.name} split test under {tmp_path}/smoke_data, from {tmp_path}/config.json']
  assert not (tmp_path / 'smoke_data').exists()
  # told otherwise (--sweep.data_from=train_config), or an artifact (no config.json): the train_config's data
  # (its stage's: detection's 'det' view)
  full = runner.load_train_config(sweep.train_config)
  full = config_files.stage_config(ml_collections.ConfigDict(full), sweep.task).to_dict()['data']
  told = runner.workdir_setup(dataclasses.replace(sweep, data_from='train_config'), str(tmp_path), log=lines.append)
  artifact = runner.workdir_setup(sweep, str(tmp_path / 'artifact'), log=lines.append)
  for setup in (told, artifact):
    assert setup.data['data_dir'] == full['data_dir'] and setup.data['options'] == dict(full['options'])
  assert lines[-1].endswith('from the train_config')
  with pytest.raises(InputError, match='data_from must be one of'):
    dataclasses.replace(sweep, data_from='both')


def test_the_shipped_detection_sweep_evaluates_an_own_data_workdir_on_its_own_dataset(tmp_path):
  """A field finding: the detection sweep named `data_name='embedded_det'`, which replaced an own-data workdir's
  dataset (a VOC folder build) with the embedded det view; the stage's own dataset is read now."""
  config = config_files.load_file(os.path.join(REPO, 'experiments', 'configs', 'own_data.py'), 'own_config')
  config_files.save_config(config.get_config('voc'), str(tmp_path))
  lines = []
  setup = runner.workdir_setup(load_sweep('detection_embedded'), str(tmp_path), log=lines.append)
  assert setup.data['name'] == 'voc_folder/embedded_det' and setup.data['split'] == 'test'
  told = runner.workdir_setup(dataclasses.replace(load_sweep('detection_embedded'), data_from='train_config'),
                              str(tmp_path), log=lines.append)
  assert told.data['name'] == 'embedded_det'  # the shipped train_config's detection stage: the det view


@pytest.mark.parametrize('task', ['localization', 'detection'])
def test_a_box_sweep_reads_its_stages_section_of_the_training_config(tmp_path, monkeypatch, task):
  """A box sweep without its own eval_size/scales evaluates at its stage's box.eval_size/eval_scales and crop_size,
  and with data_from='train_config' on its stage's data and max_boxes: they were classification's (the top level:
  eval.scales, crop_size 64, 'embedded' data). An empty train_config reuses the workdir's config.json, read once."""
  config = config_files.load_file(config_files.module_file('overfeat_jax.configs.embedded'), 'embedded_config')
  config = config.get_config()
  config_files.save_config(config, str(tmp_path))
  stage = config_files.stage_config(config, task)
  reads = []
  monkeypatch.setattr(config_files, 'load_config', lambda w, load=config_files.load_config: reads.append(w) or load(w))
  sweep = dataclasses.replace(load_sweep(f'{task}_embedded'), eval_size=0, scales=(), data_from='train_config')
  for train_config in (sweep.train_config, ''):
    reads.clear()
    setup = runner.workdir_setup(dataclasses.replace(sweep, train_config=train_config), str(tmp_path),
                                 log=lambda _: None)
    assert (setup.size, setup.scales) == (stage.box.eval_size, as_sizes(stage.box.eval_scales))
    assert setup.scales != as_sizes(config.eval.scales) and setup.crop_size == stage.crop_size != config.crop_size
    assert setup.data['name'] == stage.data.name and setup.data['max_boxes'] == stage.max_boxes
    assert reads == [str(tmp_path)]


@pytest.mark.parametrize('field,value', [('max_examples', -5), ('batch_size', 0), ('eval_size', -1),
                                         ('max_boxes', -2)])
def test_negative_sweep_counts_are_refused_when_the_sweep_is_read(field, value):
  """max_examples=-5 was read as 'the evaluation split is empty', after the output folder was made (field case)."""
  values = {**load_sweep('classification_embedded').__dict__, field: value}
  with pytest.raises(InputError, match=rf'^sweep {field} must be at least [01], got {value}\.$'):
    grid.Sweep.from_dict(values)


def test_a_sweep_view_above_the_image_pixel_limit_is_one_input_error():
  """The sweep's own eval_size makes the host view of every image: above Pillow's pixel limit it is refused before
  any network is loaded (an eval_size of 100,000 would ask for 30 GB per image)."""
  config = config_files.load_file(config_files.module_file('overfeat_jax.configs.embedded'), 'embedded_config')
  sweep = dataclasses.replace(load_sweep('classification_embedded'), eval_size=100_000)
  with pytest.raises(InputError, match=r"^the sweep's eval_size=100000 asks for a 100000x100000 view"):
    runner.make_setup(sweep, config.get_config().to_dict())


@pytest.mark.parametrize('name', ['localization_embedded', 'detection_embedded'])
def test_box_sweeps_compare_pair_and_score_averages_of_the_greedy_merge(name):
  points = grid.expand(load_sweep(name), num_models=1, num_scales=4)
  greedy = [p for p in points if p.merge != 'nms' and not p.name]
  for p in greedy:  # every grid point of the greedy merge is run with both averages
    same = [q for q in greedy if q.threshold == p.threshold and q.top_k == p.top_k]
    assert {q.average for q in same} == {'pair', 'score'}
  assert all(p.average == 'pair' for p in points if p.merge == 'nms')  # NMS has nothing to average: no copies
  assert len({dataclasses.replace(p, name='') for p in points}) == len(points)
  assert any(p.merge == 'literal' and p.average == 'score' for p in points)


def test_point_key_of_the_default_average_is_the_key_before_the_field_existed():
  # Results saved before `average` existed (the hash of every other field) stay valid; 'score' is a new key.
  point = grid.Point(merge='overlap', threshold=0.5)
  fields = {**dataclasses.asdict(point), 'models': ['a'], 'context': 'ctx'}
  del fields['name'], fields['average']
  digest = hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
  assert point.key(('a',), 'ctx') == f'dense-m0-s1-{digest}'
  assert dataclasses.replace(point, average='score').key(('a',), 'ctx') != point.key(('a',), 'ctx')


@pytest.mark.parametrize('task', ['localization', 'detection'])
def test_box_points_pass_their_average_to_the_inference(task):
  """A point's merge, threshold, average and scales reach the task the sweep builds for it (its settings and the
  options its predictor passes to `inference.localize` / `inference.detect`)."""
  from overfeat_jax.tasks import detection, localization  # pylint: disable=g-import-not-at-top
  spec = NetworkSpec('small', 32, 11 if task == 'detection' else 10, regressor_outputs=1, regressor_hidden=(16, 8))
  networks = [runner.Network('net', 'id', spec, None)]
  setup = runner.EvalSetup(task, 72, ((64, 64), (80, 80)), 64, 8, 0, {}, dict(score_threshold=0.3, max_per_scale=8,
                                                                              max_detections=4))
  options_of = localization.eval_options if task == 'localization' else detection.eval_options
  for average in grid.AVERAGES:
    point = grid.Point(merge='overlap', threshold=0.5, average=average, num_scales=1)
    (built,) = runner.point_tasks(point, networks, setup)
    assert built.name == task and built.settings.num_classes == 10 and built.settings.box.eval_size == 72
    options = options_of(built.settings)
    assert (options['average'], options['method'], options['threshold']) == (average, 'overlap', 0.5)
    assert options['scales'] == ((64, 64),)
    if task == 'detection':
      assert (options['score_threshold'], options['max_detections']) == (0.3, 4)
    assert ('score-weighted' in runner.label(point, networks, setup)) == (average == 'score')
  nms = runner.point_settings(grid.Point(merge='nms', threshold=0.4), spec, setup).box
  assert nms.merge_threshold == 0.4  # the point's threshold is the NMS IoU
  record = {'task': task, 'point': {**dataclasses.asdict(point), 'models': [0]}}
  assert report.short_label(record).endswith('score-w')
  del record['point']['average']  # a record written before the field existed
  assert 'score' not in report.short_label(record)


def test_sweep_averages_are_the_merges():
  from overfeat_jax.inference import merge  # pylint: disable=g-import-not-at-top
  assert grid.AVERAGES == merge.AVERAGES and grid.DEFAULT_AVERAGE == 'pair'


def _setup(scales, task='classification', size=72):
  return runner.EvalSetup(task, size, scales, 64, 8, 0, {}, {})


def test_cost_of_one_dense_scale_at_the_training_size_equals_one_crop():
  spec = NetworkSpec('small', 8, 10)
  setup = _setup(((64, 64), (96, 96)))
  dense = grid.Point(view='dense', num_scales=1, fine=False, flips=False)
  crop = grid.Point(view='center_crop', num_scales=0, fine=False, flips=False)
  assert runner.network_gflop(spec, dense, setup) == pytest.approx(runner.network_gflop(spec, crop, setup))
  ten = runner.network_gflop(spec, grid.Point(view='ten_crop', flips=True), setup)
  assert ten == pytest.approx(10 * runner.network_gflop(spec, crop, setup))
  coarse = runner.network_gflop(spec, grid.Point(num_scales=2, fine=False, flips=False), setup)
  fine = runner.network_gflop(spec, grid.Point(num_scales=2, fine=True, flips=False), setup)
  assert fine > coarse  # offset pooling runs the head on k*k times as many cells


def test_ten_crop_views_are_the_corners_centre_and_mirrors():
  images = jnp.arange(1 * 6 * 6 * 1, dtype=jnp.float32).reshape(1, 6, 6, 1)
  views = ensemble.crop_views(images, 4, flips=True, ten=True)
  assert len(views) == 10 and all(v.shape == (1, 4, 4, 1) for v in views)
  np.testing.assert_array_equal(views[0], images[:, 1:5, 1:5])  # centre
  np.testing.assert_array_equal(views[4], images[:, 2:, 2:])  # bottom-right corner
  np.testing.assert_array_equal(views[5], images[:, 1:5, 1:5][:, :, ::-1])
  with pytest.raises(InputError, match='larger'):
    ensemble.crop_views(images, 7, flips=False, ten=False)


TRAIN_CONFIG = '''
import importlib.util
spec = importlib.util.spec_from_file_location('embedded_cfg', {path!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)

def get_config(arg=''):
  c = module.get_config('smoke')
  c.data.data_dir = {data_dir!r}
  c.data.options.test_size = 12
  c.eval.scales = (72, 80, 88, 96, 104, 112)
  return c
'''


@pytest.fixture(scope='module')
def sweep_inputs(tmp_path_factory):
  """Two tiny networks as training workdirs, a training config on a 12-image embedded test split, a sweep."""
  root = tmp_path_factory.mktemp('sweep')
  workdirs = [checkpoints.write_checkpoint(str(root / f'run{s}'), 'classification', checkpoints.make_params(s))
              for s in (0, 1)]
  train_config = root / 'train_config.py'
  train_config.write_text(TRAIN_CONFIG.format(path=os.path.join(REPO, 'experiments', 'configs', 'embedded.py'),
                                              data_dir=str(root / 'data')))
  sweep = dataclasses.replace(
      load_sweep('classification_embedded'), train_config=str(train_config), batch_size=8,
      grid=dict(num_scales=(1, 2), fine=(False, True), flips=(False,)),
      points={'10 views': dict(view='ten_crop', flips=True),
              'ensemble': dict(models='ensemble', num_scales=2, flips=False)})
  return root, workdirs, sweep


def test_sweep_runs_resumes_without_recomputing_and_reports(sweep_inputs):
  root, workdirs, sweep = sweep_inputs
  networks = [runner.load_network(w, 'classification') for w in workdirs]
  setup = runner.make_setup(sweep, runner.load_train_config(sweep.train_config))
  calls, lines = [], []

  def counting(point, nets, setup_):
    calls.append(point)
    return runner.evaluate_point(point, nets, setup_)

  out = str(root / 'out')
  records, stats = runner.run_sweep(sweep, networks, out, setup=setup, evaluate=counting, log=lines.append)
  assert stats == {'computed': 6, 'cached': 0} and len(calls) == 6
  assert any('ETA' in line for line in lines)
  for r in records:
    assert r['metrics']['count'] == 12 and 0.0 <= r['metrics']['top1_error'] <= r['metrics']['top5_error'] + 1
    assert r['gflop_per_image'] > 0 and r['ms_per_image'] > 0
  by_label = {r['point']['name'] or r['label']: r for r in records}
  assert by_label['ensemble']['gflop_per_image'] == pytest.approx(
      2 * [r for r in records if r['point']['num_scales'] == 2 and r['point']['fine']][0]['gflop_per_image'])
  assert len(os.listdir(os.path.join(out, 'points'))) == 6

  # A second run (e.g. after an interruption) reads every point back and evaluates nothing.
  again, stats2 = runner.run_sweep(sweep, networks, out, setup=setup, evaluate=counting, log=lines.append)
  assert stats2 == {'computed': 0, 'cached': 6} and len(calls) == 6 and again == records
  # A point removed (as if the run died before writing it) is the only one recomputed.
  os.remove(os.path.join(out, 'points', sorted(os.listdir(os.path.join(out, 'points')))[0]))
  _, stats3 = runner.run_sweep(sweep, networks, out, setup=setup, evaluate=counting, log=lines.append)
  assert stats3 == {'computed': 1, 'cached': 5}
  # A named point renamed: the same result (read back, not recomputed) under the new row name, never the old.
  renamed = dataclasses.replace(sweep, points={'ten views': dict(view='ten_crop', flips=True),
                                               'ensemble': dict(models='ensemble', num_scales=2, flips=False)})
  named, stats4 = runner.run_sweep(renamed, networks, out, setup=setup, evaluate=counting, log=lines.append)
  assert stats4 == {'computed': 0, 'cached': 6}
  (old,) = [r for r in records if r['point']['view'] == 'ten_crop']
  (new,) = [r for r in named if r['point']['view'] == 'ten_crop']
  assert old['point']['name'] == '10 views' and new['point']['name'] == 'ten views'
  assert new['metrics'] == old['metrics'] and sorted(r['point']['name'] for r in named).count('10 views') == 0

  table = report.markdown_table(records)
  rows = table.strip().splitlines()
  assert rows[0].startswith('| Approach | top-1 err % | top-5 err % | GFLOP/img | ms/img') and len(rows) == 8
  assert '2-model ensemble' in table and '10 views' in table
  png = report.plot_cost(records, str(root / 'cost.png'))
  with open(png, 'rb') as f:
    head = f.read(8)
  assert head == b'\x89PNG\r\n\x1a\n' and os.path.getsize(png) > 20_000


def test_evaluation_matches_the_trainers_multiscale_procedure(sweep_inputs):
  """The sweep's dense point equals `multiscale_class_scores` on the same batch (no second implementation)."""
  from overfeat_jax.inference.multiscale import multiscale_class_scores
  _, workdirs, sweep = sweep_inputs
  net = runner.load_network(workdirs[0], 'classification')
  setup = runner.make_setup(sweep, runner.load_train_config(sweep.train_config))
  point = grid.Point(num_scales=2, fine=True, flips=True)
  batch = next(runner.eval_batches(setup))
  out = runner.outputs_fn(point, runner.point_tasks(point, [net], setup))([net.params], batch)
  np.testing.assert_array_equal(out['label'], batch['label'])
  want = multiscale_class_scores(net.spec.classifier(), net.params, jnp.asarray(batch['image'], jnp.float32),
                                 scales=((72, 72), (80, 80)), flips=True, fine=True)
  np.testing.assert_allclose(out['scores'], want, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_cli_writes_table_and_plot_and_fails_cleanly(sweep_inputs, tmp_path):
  root, workdirs, _ = sweep_inputs
  env = {**os.environ, 'PYTHONPATH': REPO}
  args = [sys.executable, '-m', 'overfeat_jax.sweep', f'--sweep={SWEEPS}/classification_embedded.py',
          f'--workdir={workdirs[0]}', f'--output={tmp_path}', f'--sweep.train_config={root}/train_config.py',
          '--sweep.max_examples=8', '--sweep.batch_size=8']
  result = subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO, timeout=500)
  assert result.returncode == 0, result.stderr[-2000:]
  assert os.path.getsize(tmp_path / 'cost.png') > 20_000 and '| Approach |' in (tmp_path / 'table.md').read_text()
  assert len(json.loads((tmp_path / 'records.json').read_text())) == 18  # 16 dense + 10 views + centre crop
  bad = subprocess.run(args[:4] + [f'--workdir={tmp_path}/missing'], capture_output=True, text=True, env=env,
                       cwd=REPO, timeout=120)
  assert bad.returncode == 2 and 'no classification checkpoint' in bad.stderr
  # A misspelled sweep field: plain words, as main's --config.FIELD (was `AttributeError: "'nosuch'"`).
  bad = subprocess.run(args[:4] + [f'--output={tmp_path}/o2', '--sweep.nosuch=1'], capture_output=True, text=True,
                       env=env, cwd=REPO, timeout=120)
  assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].endswith(
      "error: --sweep.nosuch: the config has no field 'nosuch'"), bad.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize('task, merge, classes, average', [
    ('localization', 'overlap', 10, 'pair'), ('detection', 'nms', 11, 'pair'),
    ('detection', 'overlap', 11, 'score')])
def test_box_points_evaluate_on_real_checkpoints(sweep_inputs, task, merge, classes, average):
  """Localization and detection points run the project's inference and metrics end to end on a tiny network."""
  root, _, sweep = sweep_inputs
  workdir = checkpoints.write_checkpoint(str(root / f'{task}_{merge}_{average}_run'), task,
                                         checkpoints.make_params(2, num_classes=classes, regressor_outputs=1))
  net = runner.load_network(workdir, task)
  assert net.spec.regressor_outputs == 1
  base = runner.make_setup(sweep, runner.load_train_config(sweep.train_config))
  setup = runner.EvalSetup(task, 72, ((80, 80),), 64, 8, 8, base.data, dict(
      score_threshold=0.05, max_per_scale=16, max_detections=8))
  point = grid.Point(num_scales=1, fine=True, flips=False, merge=merge, top_k=1, threshold=0.5,
                     average=average)
  result = runner.evaluate_point(point, [net], setup)
  key = 'loc_error' if task == 'localization' else 'mAP'
  assert 0.0 <= result['metrics'][key] <= 1.0 and result['metrics']['count'] == 8
  assert result['gflop_per_image'] == pytest.approx(runner.network_gflop(net.spec, point, setup))
  with pytest.raises(InputError, match=f'no {task} checkpoint'):
    runner.load_network(str(root / 'run0'), task)


def test_detection_points_apply_the_det_validation_blacklist():
  """Outputs with `ignore_classes` (DET validation built with the devkit's blacklist) are scored by the detection
  task's summary as the devkit does: issue 15's worked case gives mAP 1.0 with it, 0.25 without."""
  out = {'classes': np.array([[0], [0]]), 'scores': np.array([[0.9], [0.8]]),
         'boxes': np.array([[[60, 60, 90, 90]], [[1, 1, 50, 50]]], np.float32),
         'gt_boxes': np.array([[[1, 1, 50, 50]]] * 2, np.float32), 'box_labels': np.array([[0], [0]])}
  spec = NetworkSpec('small', 32, 2, regressor_outputs=1, regressor_hidden=(16, 8))  # 1 class + background
  networks = [runner.Network('net', 'id', spec, None)]
  setup = runner.EvalSetup('detection', 72, ((64, 64),), 64, 8, 0, {}, {})
  stage_tasks = runner.point_tasks(grid.Point(merge='nms', threshold=0.5), networks, setup)
  for ignore, want in ((None, 0.25), (np.array([[0], [-1]]), 1.0)):
    metrics = runner.summarize(stage_tasks, out if ignore is None else {**out, 'ignore_classes': ignore})
    assert metrics['mAP'] == pytest.approx(want)


# --- refused before any point is evaluated (field cases of a new user) ---------------------------------------
def _nets(*specs):
  """Networks without params (the checks read their specs and identities only); labels as `load_network`'s."""
  return [runner.Network(f'{s.geometry}/{s.width_divisor} run{i}', f'/runs/run{i}@5', s, None)
          for i, s in enumerate(specs)]


def _never(point, networks, setup):
  raise AssertionError(f'evaluated {point} although the sweep should have been refused')


def _refused(tmp_path, sweep, networks, setup, match):
  with pytest.raises(InputError, match=match):
    runner.run_sweep(sweep, networks, str(tmp_path / 'out'), setup=setup, evaluate=_never, log=lambda _: None)
  assert not (tmp_path / 'out').exists()  # nothing written either


SMALL, FAST = NetworkSpec('small', 32, 10), NetworkSpec('fast', 1, 10)


def test_scales_below_a_networks_minimum_input_are_refused_before_any_point(tmp_path):
  """Field case: `--sweep.scales='(8,16,24,32,40,48)'` on the small network, or a full-width fast network next to
  it at the demo's scales, crashed in the first point with `ValueError: zero-size array to reduction operation`."""
  sweep = dataclasses.replace(load_sweep('classification_embedded'), grid=dict(num_scales=(1, 2, 6)), points={})
  tiny = _setup(tuple((s, s) for s in (8, 16, 24, 32, 40, 48)))
  _refused(tmp_path, sweep, _nets(SMALL), tiny,
           r"^the sweep evaluates small/32 run0 at 8x8 pixels, below the small/32 network's minimum input of 53 "
           r'pixels \(a smaller input gives no output\); use scales of 53 pixels or more\.$')
  demo = _setup(tuple((s, s) for s in (80, 96, 112, 128, 144, 160)))
  each = dataclasses.replace(sweep, defaults={**sweep.defaults, 'models': 'each'})
  _refused(tmp_path, each, _nets(SMALL, FAST), demo, r"^the sweep evaluates fast/1 run1 at 80x80 pixels, below the "
           r"fast network's minimum input of 231 pixels")
  # Only the scales a point uses count: 1 scale of (64, 40) refuses at its narrow side, a 2nd one is not read.
  one = dataclasses.replace(sweep, grid=dict(num_scales=(1,)))
  _refused(tmp_path, one, _nets(SMALL), _setup(((64, 40), (8, 8))), 'at 64x40 pixels')
  runner.check_points(grid.expand(one, 1, 2), _nets(SMALL), _setup(((64, 64), (8, 8))))
  # The crop views cut the network's training size out of the evaluation view: a view smaller than it is refused.
  crops = dataclasses.replace(sweep, grid={}, points={'10 views': dict(view='ten_crop', models='each')})
  _refused(tmp_path, crops, _nets(SMALL, FAST), demo,
           r"^the sweep's crop views cut fast/1 run1's training size \(231 pixels\) out of the 72-pixel evaluation "
           r'view; use an eval_size of 231 or more')


def test_an_ensemble_of_networks_with_different_class_counts_is_refused_before_any_point(tmp_path):
  """Field case: a detection-stage artifact (10 classes + background: 11 outputs) next to the 10-class workdir
  crashed in the ensemble point with `All input arrays must have the same shape. Got (100, 10), (100, 11)`."""
  sweep = load_sweep('classification_embedded')
  networks = _nets(SMALL, NetworkSpec('small', 32, 11, regressor_outputs=1, regressor_hidden=(16, 8)))
  _refused(tmp_path, sweep, networks, _setup(tuple((s, s) for s in (80, 96, 112, 128, 144, 160))),
           r"^point 'ensemble' averages the class probabilities of networks with different class counts: "
           r'small/32 run0 has 10 outputs, small/32 run1 has 11; ensemble only networks trained on the same classes\.$')
  alone = dataclasses.replace(sweep, points={k: v for k, v in sweep.points.items() if 'ensemble' not in k})
  runner.check_points(grid.expand(alone, 2, 6), networks, _setup(tuple((s, s) for s in (80, 96, 112, 128, 144, 160))))


def test_the_same_network_given_twice_is_refused(tmp_path):
  """Field case: `--workdir=A --checkpoints=A` made a '2-model ensemble' of one network."""
  sweep = load_sweep('classification_embedded')
  a, b = _nets(SMALL, SMALL)
  _refused(tmp_path, sweep, [a, dataclasses.replace(b, ident=a.ident)], _setup(((80, 80),) * 6),
           r'^networks 1 and 2 \(--workdir first, then --checkpoints\) are the same network /runs/run0@5; give each '
           r'network once\.$')


@pytest.mark.parametrize('change, message', [
    # field case: --sweep.grid.flips='(1,2)' was accepted
    (dict(grid={'flips': (True, 2)}), r'^grid point \(flips=2\): flips must be True or False, got 2\.$'),
    (dict(grid={'fine': (1,)}), r'^grid point \(fine=1\): fine must be True or False, got 1\.$'),
    (dict(points={'x': {'flips': 'yes'}}), r"^point 'x': flips must be True or False, got 'yes'\.$"),
    # grid points were named as an unlabelled tuple: "grid (False, False, 10)"
    (dict(grid={'fine': (False,), 'flips': (False,), 'num_scales': (10,)}),
     r"^grid point \(fine=False, flips=False, num_scales=10\): num_scales must be in 1\.\.4 \(the training "
     r"config's scale list has 4 scales\)\.$"),
    # field case: --sweep.scales='(8,)' was blamed on the training config
    (dict(scales=(8,), points={'each network': dict(models='each', num_scales=4)}),
     r"^point 'each network': num_scales must be in 1\.\.1 \(the sweep's scales \(8,\) have 1 scale\)\.$")])
def test_bad_point_values_are_refused_with_one_line_naming_the_point(change, message):
  sweep = dataclasses.replace(load_sweep('classification_embedded'), grid=change.get('grid', {}),
                              points=change.get('points', {}), scales=change.get('scales', ()))
  with pytest.raises(InputError, match=message):
    grid.expand(sweep, num_models=1, num_scales=len(sweep.scales) or 4)


def test_an_exported_artifact_is_a_workdir_the_sweep_reads(tmp_path):
  """Field case: `--workdir=<artifact>` was refused (`config.json is not a training config (no "stages" field)`),
  although the docs and --help allow it: its network is evaluated on the train_config's data, and the results
  need an --output (the artifact folder holds only the network: exporting again replaces it)."""
  from overfeat_jax.checkpoint import export as export_lib  # pylint: disable=g-import-not-at-top
  spec = NetworkSpec(checkpoints.GEOMETRY, checkpoints.DIVISOR, checkpoints.CLASSES)
  artifact = export_lib.write_artifact(str(tmp_path / 'art'), checkpoints.make_params(0),
                                       export_lib.build_config(spec, stage='classification'))
  sweep = load_sweep('classification_embedded')
  lines = []
  setup = runner.workdir_setup(sweep, artifact, log=lines.append)
  full = config_files.stage_values(runner.load_train_config(sweep.train_config), 'classification')
  assert setup.data['data_dir'] == full['data']['data_dir'] and setup.scales == as_sizes(full['eval']['scales'])
  assert lines == [f'data: {full["data"]["name"]} split test under {full["data"]["data_dir"]}, from the '
                   f'train_config ({artifact} is an exported artifact: it names no data)']
  with pytest.raises(InputError, match=rf"^the sweep names no train_config and {artifact} is an exported artifact "
                                       r"\(its config.json describes the network, not the training run\); set the "
                                       r"sweep's train_config\.$"):
    runner.workdir_setup(dataclasses.replace(sweep, train_config=''), artifact, log=lines.append)
  with pytest.raises(InputError, match=rf'^--workdir {artifact} is an exported artifact: give --output'):
    runner.output_folder('', artifact, 'classification_embedded')
  assert runner.output_folder('/o', artifact, 'x') == '/o'
  assert runner.output_folder('', str(tmp_path), 'x') == os.path.join(str(tmp_path), 'sweeps', 'x')


ONE_POINT_SWEEP = '''
import ml_collections

def get_config():
  return ml_collections.ConfigDict(dict(
      task='classification', train_config={train_config!r}, data_from='workdir', data_name='', eval_size=0,
      scales=(), max_boxes=0, batch_size=8, max_examples=8, box={{}}, defaults=dict(models='first'),
      grid=dict(num_scales=(1,), fine=(True,), flips=(False,)), points={{'ensemble': dict(models='ensemble')}}))
'''


@pytest.mark.slow
def test_cli_sweeps_an_artifact_and_refuses_bad_networks_and_scales_in_one_line(sweep_inputs, tmp_path):
  """The field cases end to end: an artifact as --workdir is evaluated; scales below the network's minimum, an
  ensemble of 10 and 11 outputs, and one network given twice are one line and exit status 2, nothing evaluated."""
  from overfeat_jax.checkpoint import export as export_lib  # pylint: disable=g-import-not-at-top
  root, workdirs, _ = sweep_inputs
  spec = NetworkSpec(checkpoints.GEOMETRY, checkpoints.DIVISOR, checkpoints.CLASSES)
  artifact = export_lib.write_artifact(str(tmp_path / 'art'), checkpoints.make_params(0),
                                       export_lib.build_config(spec, stage='classification'))
  det_spec = NetworkSpec(checkpoints.GEOMETRY, checkpoints.DIVISOR, 11, regressor_outputs=1, regressor_hidden=(16, 8))
  detection = export_lib.write_artifact(
      str(tmp_path / 'det'), checkpoints.make_params(1, num_classes=11, regressor_outputs=1),
      export_lib.build_config(det_spec, stage='detection'))
  (tmp_path / 'one.py').write_text(ONE_POINT_SWEEP.format(train_config=f'{root}/train_config.py'))
  env = {**os.environ, 'PYTHONPATH': REPO}

  def sweep(*extra):
    return subprocess.run([sys.executable, '-m', 'overfeat_jax.sweep', f'--sweep={tmp_path}/one.py', '--noplot',
                           *extra], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)

  done = sweep(f'--workdir={artifact}', f'--output={tmp_path}/out')
  assert done.returncode == 0, done.stderr[-2000:]
  assert len(json.loads((tmp_path / 'out' / 'records.json').read_text())) == 1 and 'small/32 art' in done.stdout
  for args, message in (
      ([f'--workdir={artifact}'], f'--workdir {artifact} is an exported artifact: give --output'),
      ([f'--workdir={workdirs[0]}', f'--output={tmp_path}/o1', '--sweep.scales=(8,16)'],
       "below the small/32 network's minimum input of 53 pixels"),
      ([f'--workdir={workdirs[0]}', f'--checkpoints={detection}', f'--output={tmp_path}/o2'],
       'small/32 run0 has 10 outputs, small/32 det has 11'),
      ([f'--workdir={workdirs[0]}', f'--checkpoints={workdirs[0]}/', f'--output={tmp_path}/o3'],
       'are the same network')):
    bad = sweep(*args)
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and lines[-1].startswith('sweep.py: error: ') and message in lines[-1], bad.stderr
    assert 'Traceback' not in bad.stderr and not any((tmp_path / f'o{i}').exists() for i in (1, 2, 3))


@pytest.mark.slow
@pytest.mark.parametrize('task, classes', [('localization', 10), ('detection', 11)])
def test_box_points_run_at_the_shipped_localization_sweeps_scales(sweep_inputs, task, classes):
  """docs/sweeps.md said box points at 72, 88, 104 and 120 px (unequal offset maps of the small geometry) failed
  with a shape error; the fine map is trimmed (`inference.dense.dense_apply`) and the shipped localization sweep
  uses those scales: all four evaluate together, fine stride."""
  root, _, sweep = sweep_inputs
  scales = load_sweep('localization_embedded').scales
  assert scales == (72, 88, 104, 120)
  workdir = checkpoints.write_checkpoint(str(root / f'{task}_shipped_scales'), task,
                                         checkpoints.make_params(3, num_classes=classes, regressor_outputs=1))
  net = runner.load_network(workdir, task)
  base = runner.make_setup(sweep, runner.load_train_config(sweep.train_config))
  setup = runner.EvalSetup(task, 72, as_sizes(scales), 64, 4, 4, base.data, dict(
      score_threshold=0.05, max_per_scale=16, max_detections=8))
  point = grid.Point(num_scales=4, fine=True, flips=False, merge='overlap', top_k=1, threshold=0.5)
  assert runner.evaluate_point(point, [net], setup)['metrics']['count'] == 4
