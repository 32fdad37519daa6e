"""Export: trained checkpoint -> artifact -> `load_pretrained` in a fresh process, bit for bit; the safetensors file
reads with safetensors.numpy / safetensors.flax alone; version-1 (.npz) artifacts still load; bad artifacts fail."""

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
import safetensors.numpy
from flax import traverse_util

import overfeat_jax
from overfeat_jax.checkpoint import export as export_lib
from overfeat_jax.errors import InputError
from overfeat_jax.models.geometry import get_geometry
from overfeat_jax.models.overfeat import OverFeat
from tests.sweeps import checkpoints

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Refuses the training stack in a new interpreter, as if only numpy, jax, flax and safetensors were installed.
_BLOCK = textwrap.dedent('''
    import sys
    class _Refuse:
      def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('optax', 'orbax', 'tensorflow', 'tensorflow_datasets', 'grain', 'torch'):
          raise ImportError(f'{name} is blocked: not installed in this test')
    sys.meta_path.insert(0, _Refuse())
''')

# Runs in a new interpreter: imports only overfeat_jax, jax and numpy, and checks what else got imported.
_FRESH = _BLOCK + textwrap.dedent('''
    import numpy as np
    import jax
    import overfeat_jax
    model, params = overfeat_jax.load_pretrained(sys.argv[1])
    data = np.load(sys.argv[2], allow_pickle=False)
    out = np.asarray(model.apply({'params': params}, data['images']))
    assert out.dtype == data['expected'].dtype and out.shape == data['expected'].shape, (out.shape, out.dtype)
    assert np.array_equal(out, data['expected']), float(np.abs(out - data['expected']).max())
    loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'optax', 'orbax')
                    or m.startswith('overfeat_jax.train'))
    assert not loaded, loaded
    print('OK', out.shape)
''')


def _run(args, **kwargs):
  env = {**os.environ, 'PYTHONPATH': REPO}
  return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=REPO,
                        timeout=120, **kwargs)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """A classification workdir with one checkpoint (full TrainState), and the params in it."""
  workdir = str(tmp_path_factory.mktemp('run'))
  params = checkpoints.make_params(seed=3)
  checkpoints.write_checkpoint(workdir, 'classification', params, step=7)
  return workdir, params


def test_export_then_fresh_process_gives_identical_score_maps(trained, tmp_path):
  workdir, params = trained
  out = str(tmp_path / 'artifact')
  line = export_lib.export_workdir(workdir, 'classification', out, 'artifact', None)
  assert 'small/32' in line and 'step 7' in line
  assert sorted(os.listdir(out)) == ['config.json', 'params.safetensors']
  model = OverFeat(get_geometry('small', 32), num_classes=10)
  images = np.random.default_rng(0).integers(0, 256, (2, 80, 104, 3), dtype=np.uint8)  # not the training size
  expected = np.asarray(model.apply({'params': params}, images))
  assert expected.shape == (2, 2, 4, 10)  # a dense score map, as the original on a larger image
  np.savez(tmp_path / 'io.npz', images=images, expected=expected)
  result = _run(['-c', _FRESH, out, str(tmp_path / 'io.npz')])
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'OK (2, 2, 4, 10)' in result.stdout


def test_artifact_has_no_optimizer_state_and_describes_the_network(trained, tmp_path):
  workdir, params = trained
  out = export_lib.write_artifact(
      str(tmp_path / 'a'), params, export_lib.build_config(export_lib.infer_network(params), stage='classification',
                                                           class_names=[f'c{i}' for i in range(10)]))
  config, spec, loaded = export_lib.read_artifact(out)
  assert spec == export_lib.NetworkSpec('small', 32, 10)
  assert config['network']['fine_stride'] == 8 and config['class_names'][3] == 'c3'
  assert config['format_version'] == 2 and config['params']['file'] == 'params.safetensors'
  data = safetensors.numpy.load_file(os.path.join(out, 'params.safetensors'))
  assert all(name.split('/')[0] in ('features', 'classifier') for name in data)  # no 'opt_state'
  assert sum(v.size for v in data.values()) == config['params']['count']


# What another project does with the file: no overfeat_jax, only safetensors (+ numpy or jax/flax).
_FOREIGN = _BLOCK + textwrap.dedent('''
    import numpy as np
    from flax import traverse_util
    from safetensors.flax import load_file as load_flax
    from safetensors.numpy import load_file as load_numpy
    file, reference = sys.argv[1], np.load(sys.argv[2], allow_pickle=False)
    flat = load_numpy(file)
    assert sorted(flat) == sorted(reference.files), (sorted(flat), reference.files)
    for name in reference.files:
      assert flat[name].dtype == np.float32 and np.array_equal(flat[name], reference[name]), name
    tree = traverse_util.unflatten_dict(load_flax(file), sep='/')
    kernel = tree['features']['conv1']['kernel']
    assert type(kernel).__module__.startswith('jax') and np.array_equal(kernel, reference['features/conv1/kernel'])
    assert not [m for m in sys.modules if m.split('.')[0] == 'overfeat_jax']
    print('FOREIGN OK', len(flat))
''')


def test_safetensors_file_reads_without_overfeat_jax_in_numpy_and_flax(trained, tmp_path):
  _, params = trained
  out = export_lib.write_artifact(str(tmp_path / 'a'), params, export_lib.build_config(
      export_lib.infer_network(params), stage='classification'))
  flat = traverse_util.flatten_dict(params, sep='/')
  assert 'features/conv1/kernel' in flat and 'classifier/fc8/bias' in flat  # the names PyTorch users index by
  np.savez(tmp_path / 'reference.npz', **{k: np.asarray(v) for k, v in flat.items()})
  result = _run(['-c', _FOREIGN, os.path.join(out, 'params.safetensors'), str(tmp_path / 'reference.npz')])
  assert result.returncode == 0, result.stderr[-2000:]
  assert f'FOREIGN OK {len(flat)}' in result.stdout


def _write_version_1(path, params, config):
  """An artifact exactly as format version 1 wrote it: params.npz (np.savez of the flat names) + config.json."""
  os.makedirs(path)
  flat = {k: np.asarray(v, np.float32) for k, v in traverse_util.flatten_dict(params, sep='/').items()}
  np.savez(os.path.join(path, 'params.npz'), **flat)
  digest = hashlib.sha256(open(os.path.join(path, 'params.npz'), 'rb').read()).hexdigest()
  config = {**config, 'format_version': 1,
            'params': {'file': 'params.npz', 'sha256': digest, 'count': sum(v.size for v in flat.values())}}
  with open(os.path.join(path, 'config.json'), 'w') as f:
    json.dump(config, f)


def test_version_1_npz_artifacts_still_load(tmp_path):
  params = checkpoints.make_params(seed=4, regressor_outputs=1)
  spec = export_lib.infer_network(params)
  _write_version_1(str(tmp_path / 'v1'), params, export_lib.build_config(spec, stage='localization'))
  model, backbone, regressor, reg_params = overfeat_jax.load_pretrained(str(tmp_path / 'v1'), with_regressor=True)
  for got, want in ((backbone, params['backbone']), (reg_params, params['regressor'])):
    jax.tree.map(np.testing.assert_array_equal, got, want)
  assert regressor.num_outputs == 1 and model.num_classes == 10
  # Re-exported, it becomes version 2 with identical arrays.
  out = export_lib.write_artifact(str(tmp_path / 'v1'), params, export_lib.build_config(spec, stage='localization'))
  assert sorted(os.listdir(out)) == ['config.json', 'params.safetensors']


def test_localization_export_keeps_the_regressor(tmp_path):
  params = checkpoints.make_params(seed=1, regressor_outputs=10)
  workdir = checkpoints.write_checkpoint(str(tmp_path / 'run'), 'localization', params)
  out = str(tmp_path / 'loc')
  export_lib.export_workdir(workdir, 'localization', out, 'artifact', 5)
  model, backbone, regressor, reg_params = overfeat_jax.load_pretrained(out, with_regressor=True)
  images = np.random.default_rng(1).integers(0, 256, (1, 72, 72, 3), dtype=np.uint8)
  pooled = model.apply({'params': backbone}, images, method=model.pooled)
  boxes = regressor.apply({'params': reg_params}, pooled)
  assert boxes.shape == (1, 2, 2, 10, 4)
  np.testing.assert_array_equal(boxes, regressor.apply({'params': params['regressor']}, pooled))
  cls = export_lib.write_artifact(str(tmp_path / 'cls'), params['backbone'], export_lib.build_config(
      export_lib.infer_network(params['backbone']), stage='classification'))
  with pytest.raises(InputError, match='without a box regressor'):
    overfeat_jax.load_pretrained(cls, with_regressor=True)


@pytest.mark.parametrize('damage, message', [
    ('flip_byte', 'checksum'), ('version', 'format version 99'), ('format', 'not an overfeat_jax artifact'),
    ('json', 'not valid JSON'), ('missing', 'missing'), ('shape', 'do not match the network')])
def test_damaged_artifacts_fail_with_one_clear_error(trained, tmp_path, damage, message):
  _, params = trained
  out = export_lib.write_artifact(str(tmp_path / 'a'), params, export_lib.build_config(
      export_lib.infer_network(params), stage='classification'))
  cfg_path, npz = os.path.join(out, 'config.json'), os.path.join(out, 'params.safetensors')
  with open(cfg_path) as f:
    cfg = json.load(f)
  if damage == 'flip_byte':
    data = bytearray(open(npz, 'rb').read())
    data[len(data) // 2] ^= 0xFF
    open(npz, 'wb').write(bytes(data))
  elif damage == 'missing':
    os.remove(npz)
  elif damage == 'json':
    open(cfg_path, 'w').write('{"format": ')
  else:
    if damage == 'version':
      cfg['format_version'] = 99
    elif damage == 'format':
      cfg['format'] = 'something.else'
    else:  # the config claims another width: the arrays no longer fit
      cfg['network']['width_divisor'] = 16
    json.dump(cfg, open(cfg_path, 'w'))
  with pytest.raises(InputError, match=message):
    overfeat_jax.load_pretrained(out)


def test_cli_bad_inputs_exit_2_with_one_line(trained, tmp_path):
  workdir, _ = trained
  (tmp_path / 'occupied').mkdir()
  (tmp_path / 'occupied' / 'file.txt').write_text('x')
  cases = [
      (['--workdir', str(tmp_path / 'nothing'), '--output', str(tmp_path / 'o')], 'no classification checkpoint'),
      (['--workdir', workdir, '--output', str(tmp_path / 'o'), '--format', 'release'], 'needs the fast or accurate'),
      (['--workdir', workdir, '--output', str(tmp_path / 'occupied')], 'not an overfeat_jax artifact'),
      (['--workdir', workdir, '--output', str(tmp_path / 'o'), '--step', '3'], 'no checkpoint at step 3'),
      # a folder that takes no new files: the user's path, not the temporary sibling that failed first
      (['--workdir', workdir, '--output', '/proc/overfeat_exp'], 'cannot write /proc/overfeat_exp: No such file'),
      # field case: a stage folder exported with `class_names: null` and no preprocessing; the hint names the fix
      (['--workdir', os.path.join(workdir, 'classification'), '--output', str(tmp_path / 'o')],
       f'is a stage folder (the classification checkpoints of the training workdir {workdir}), not a training '
       f'workdir; run with --workdir={workdir} --stage=classification'),
  ]
  for args, message in cases:
    result = _run(['-m', 'overfeat_jax.export', *args])
    assert result.returncode == 2, (args, result.stderr[-1000:])
    errors = [line for line in result.stderr.splitlines() if 'error' in line]
    assert len(errors) == 1 and message in errors[0], result.stderr[-1000:]
  assert not os.path.exists(tmp_path / 'o')


def test_cli_without_config_reads_the_workdirs_config_json(tmp_path):
  """`export` without --config wrote `class_names: null` although the workdir's config.json (which `predict`
  reads by itself) names the embedded classes (field case): it now reads that file by default."""
  from overfeat_jax import config_files  # pylint: disable=g-import-not-at-top
  from overfeat_jax.data.draw import CLASS_NAMES  # pylint: disable=g-import-not-at-top
  from tests.train.helpers import load_config  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / 'run')
  checkpoints.write_checkpoint(workdir, 'classification', checkpoints.make_params(seed=4), step=2)
  config = load_config('embedded', 'smoke')
  config.model.geometry, config.model.width_divisor = checkpoints.GEOMETRY, checkpoints.DIVISOR
  config_files.save_config(config, workdir)
  result = _run(['-m', 'overfeat_jax.export', f'--workdir={workdir}', f'--output={tmp_path / "a"}'])
  assert result.returncode == 0, result.stderr[-2000:]
  with open(tmp_path / 'a' / 'config.json') as f:
    assert json.load(f)['class_names'] == list(CLASS_NAMES[:checkpoints.CLASSES])


def test_rewrite_replaces_atomically_and_leaves_no_temporaries(trained, tmp_path):
  _, params = trained
  cfg = export_lib.build_config(export_lib.infer_network(params), stage='classification')
  out = str(tmp_path / 'a')
  export_lib.write_artifact(out, params, cfg)
  bumped = {k: {n: {p: v + 1 for p, v in layer.items()} for n, layer in scope.items()} for k, scope in params.items()}
  export_lib.write_artifact(out, bumped, cfg)
  _, loaded = overfeat_jax.load_pretrained(out)
  np.testing.assert_array_equal(loaded['features']['conv1']['bias'], np.asarray(bumped['features']['conv1']['bias']))
  assert os.listdir(tmp_path) == ['a']


def test_infer_network_recognises_every_geometry_and_refuses_others():
  for seed, divisor in ((0, 16), (1, 32)):
    params = checkpoints.make_params(seed, divisor=divisor, num_classes=7)
    assert export_lib.infer_network(params) == export_lib.NetworkSpec('small', divisor, 7)
  with pytest.raises(InputError, match='not an OverFeat tree'):
    export_lib.infer_network({'weights': np.zeros(3)})
  params = checkpoints.make_params(0)
  params['classifier']['fc7']['kernel'] = np.zeros((1, 1, 5, 5))
  with pytest.raises(InputError, match='no registered network'):
    export_lib.infer_network(params)


def test_a_training_workdir_with_its_config_json_is_not_an_artifact(tmp_path):
  """The trainer saves `<workdir>/config.json` (the training config): export must not overwrite such a
  workdir, and the sweep must read it as a workdir, not as an artifact."""
  from overfeat_jax.sweeps import runner  # pylint: disable=g-import-not-at-top
  from overfeat_jax import config_files  # pylint: disable=g-import-not-at-top
  from tests.train.helpers import load_config  # pylint: disable=g-import-not-at-top
  params = checkpoints.make_params(seed=2)
  workdir = checkpoints.write_checkpoint(str(tmp_path / 'run'), 'classification', params)
  config = load_config('embedded', 'smoke')
  config_files.save_config(config, workdir)
  assert not export_lib.is_artifact(workdir)
  with pytest.raises(InputError, match='not an overfeat_jax artifact'):
    export_lib.write_artifact(workdir, params, export_lib.build_config(export_lib.infer_network(params),
                                                                       stage='classification'))
  assert os.path.isdir(os.path.join(workdir, 'classification', 'checkpoints'))
  net = runner.load_network(workdir, 'classification')
  assert net.ident.endswith('@5')
  assert runner.load_train_config('', workdir) == config.to_dict()
  with pytest.raises(InputError, match='no config.json'):
    runner.load_train_config('', str(tmp_path))


def test_config_details_describe_the_exported_stage_from_its_settings():
  from overfeat_jax.config_files import settings_from_config  # pylint: disable=g-import-not-at-top
  from tests.train.helpers import load_config  # pylint: disable=g-import-not-at-top
  config = load_config('embedded', 'smoke')
  spec = export_lib.NetworkSpec('small', 32, 10, regressor_outputs=1, regressor_hidden=(32, 16))
  spec, names, pre = export_lib.config_details(settings_from_config(config, 'localization'), spec)
  assert spec.dtype == 'float32' and names[:2] == ['disc', 'square'] and len(names) == 10
  assert pre['crop_size'] == 72 and pre['eval_scales'] == [[72, 72], [88, 88]]  # the stage's own section
  assert pre['box']['eval_scales'] == [[64, 64], [80, 80]] and pre['box']['merge_average'] == 'pair'
  json.dumps(pre)  # JSON-ready
  _, _, pre = export_lib.config_details(settings_from_config(config, 'classification'),
                                        export_lib.NetworkSpec('small', 32, 10))
  assert 'box' not in pre and pre['crop_size'] == 64
  with pytest.raises(InputError, match='describes small/32 but the checkpoint holds small/16'):
    export_lib.config_details(settings_from_config(config, 'classification'), export_lib.NetworkSpec('small', 16, 10))
  detection = export_lib.build_config(export_lib.NetworkSpec('small', 32, 11), stage='detection',
                                      class_names=names)
  assert detection['network']['background_class'] == 10


def test_release_format_replaces_only_release_files_and_says_so(trained, tmp_path, monkeypatch, capsys):
  """`--format=release --output=precious.txt` overwrote any existing file (field case: a text file became 583 MB
  of weights). Now an existing path is replaced only when its size is the network's release layout size, with a
  note on stderr; anything else is refused and left as it was. The release networks are 146 M parameters or more,
  so the test lets the tiny network through the network check (`release_geometry`); the rest is the real path."""
  workdir, params = trained
  spec = export_lib.infer_network(params)
  text, folder, out = tmp_path / 'precious.txt', tmp_path / 'folder', str(tmp_path / 'net_weight')
  text.write_text('notes')
  folder.mkdir()
  monkeypatch.setattr(export_lib, 'release_geometry', lambda s: s.classifier().geometry)
  size = 4 * get_geometry('small', 32).param_count(10)
  for path, found in ((text, '5 bytes'), (folder, 'a directory')):
    message = f'{path} exists and is not a release weight file ({found}; the small release layout has {size:,} bytes)'
    with pytest.raises(InputError, match=re.escape(message)):
      export_lib.export_workdir(workdir, 'classification', str(path), 'release', None)
  assert text.read_text() == 'notes' and os.listdir(folder) == []
  capsys.readouterr()
  line = export_lib.export_workdir(workdir, 'classification', out, 'release', None)
  assert f'{size} bytes' in line and os.path.getsize(out) == size and capsys.readouterr().err == ''
  bumped = jax.tree.map(lambda v: v + 1, params)
  export_lib.export_release(bumped, spec, out)  # an earlier release file of the right size: replaced, and said
  assert capsys.readouterr().err.strip().endswith(f'note: replaced 1 earlier output: {out}')
  from overfeat_jax.models import release_weights  # pylint: disable=g-import-not-at-top
  loaded = release_weights.load_release_weights(out, get_geometry('small', 32), 10)
  np.testing.assert_array_equal(loaded['features']['conv1']['bias'], bumped['features']['conv1']['bias'])
  assert sorted(os.listdir(tmp_path)) == ['folder', 'net_weight', 'precious.txt']  # no temporaries left


def test_the_same_checkpoint_always_exports_to_the_same_bytes(trained, tmp_path):
  """The safetensors metadata keys came out in a per-process random order (a Rust HashMap), so one checkpoint
  exported twice had two sha256s and sweeps, which key finished points on it, recomputed them. Both files are
  now byte-identical export after export (sorted keys, no time stamps)."""
  workdir, _ = trained
  outs = [str(tmp_path / f'a{i}') for i in range(6)]  # the old order differed between saves in one process too
  for out in outs:
    export_lib.export_workdir(workdir, 'classification', out, 'artifact', None)
  for name in ('config.json', 'params.safetensors'):
    contents = {open(os.path.join(out, name), 'rb').read() for out in outs}
    assert len(contents) == 1, name
  data = open(os.path.join(outs[0], 'params.safetensors'), 'rb').read()
  header = json.loads(data[8:8 + int.from_bytes(data[:8], 'little')])
  assert list(header['__metadata__']) == ['format', 'format_version']
  _, loaded = overfeat_jax.load_pretrained(outs[0])  # still a valid artifact
  jax.tree.map(np.testing.assert_array_equal, loaded, trained[1])


def test_a_stage_folder_is_refused_with_the_command_that_exports_it(trained, tmp_path):
  """`--workdir=<workdir>/classification` found the checkpoints but not the workdir's config.json, and wrote
  `class_names: null` without preprocessing (field case); a stage's checkpoints folder did the same."""
  workdir, _ = trained
  for given in (os.path.join(workdir, 'classification'), os.path.join(workdir, 'classification', 'checkpoints'),
                os.path.join(workdir, 'classification') + '/'):
    assert export_lib.stage_folder_of(given) == (workdir, 'classification'), given
  assert export_lib.stage_folder_of(workdir) is None
  assert export_lib.stage_folder_of(str(tmp_path)) is None  # no checkpoints at all: the usual error follows


def test_a_missing_artifact_is_reported_as_missing(tmp_path):
  with pytest.raises(InputError, match=f'{tmp_path / "nothing"} does not exist'):
    overfeat_jax.load_pretrained(str(tmp_path / 'nothing'))
  with pytest.raises(InputError, match='is not an overfeat_jax artifact'):
    overfeat_jax.load_pretrained(str(tmp_path))
