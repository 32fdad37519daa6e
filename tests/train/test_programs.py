"""One builder of a stage's programs (`train.programs`): the TPU pre-flight lowers exactly what the trainer runs,
and the compiled init holds no trained weights (they are copied in outside jit)."""

import dataclasses
import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from overfeat_jax import config_files
from overfeat_jax.checkpoint import transfer
from overfeat_jax.parallel import mesh as mesh_lib
from overfeat_jax.train import loop, preflight
from overfeat_jax.train import programs as programs_lib
from overfeat_jax.train import step as step_lib
from tests.train.helpers import load_config

# A dense constant of the lowered program, printed as hex: `dense<"0x0000803F...">` (2 characters a byte).
_HEX_CONSTANT = re.compile(r'dense<"0x([0-9A-Fa-f]+)">')


def constant_bytes(hlo_text: str) -> list[int]:
  """Sizes in bytes of the dense constants of a lowered program's text."""
  return [len(m) // 2 for m in _HEX_CONSTANT.findall(hlo_text)]


def abstract(tree):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


class _Recorder:
  """Wraps the trainer's programs (`programs.build`'s result) to record the arguments each program is called
  with, without compiling them: the train step returns the state unchanged, an eval step zeros of its output
  shapes (the loop's bookkeeping around them runs for real)."""

  def __init__(self):
    self.calls = {}

  def build(self, original, *args, **kwargs):
    built = original(*args, **kwargs)
    evals = {name: functools.partial(self._eval, name, fn) for name, fn in built.eval_steps.items()}
    return dataclasses.replace(built, train_step=functools.partial(self._train, built.train_step),
                               eval_steps=evals, init_params=self._init(built), create_state=lambda p, r: p)

  def _init(self, built):
    def init(rng):  # the abstract state's zeros, placed as the run's state is (skips compiling flax's init)
      del rng
      state = jax.tree.map(lambda s: jax.device_put(np.zeros(s.shape, s.dtype), s.sharding), built.state)
      return state.replace(first_nonfinite=jax.device_put(np.int32(-1), built.state.first_nonfinite.sharding))
    return init

  def _train(self, fn, state, batch):
    self.calls.setdefault('train', (fn, abstract((state, batch))))
    with jax.transfer_guard('allow'):  # the loop disallows transfers around the step; these are the fake's own
      return state, {'loss': jnp.zeros(()), 'lr': jnp.zeros(())}

  def _eval(self, name, fn, params, batch):
    self.calls.setdefault(f'eval/{name}', (fn, abstract((params, batch))))
    shapes = jax.eval_shape(fn, params, batch)
    return {**jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes), 'mask': batch['mask']}


@pytest.fixture(scope='module')
def smoke():
  return load_config('embedded', 'smoke')


def test_the_preflight_lowers_exactly_what_the_trainer_runs(smoke, data_dir, tmp_path, monkeypatch):
  config = load_config('embedded', 'smoke')
  config.stages, config.num_train_steps, config.data.data_dir = ('classification',), 1, str(data_dir)
  recorder = _Recorder()
  monkeypatch.setattr(programs_lib, 'build', functools.partial(recorder.build, programs_lib.build))
  loop.train_and_evaluate(config, str(tmp_path / 'run'))
  monkeypatch.undo()
  assert set(recorder.calls) == {'train', 'eval/center_crop', 'eval/multiscale'}  # every program ran, built once

  mesh = mesh_lib.make_mesh()
  for program in preflight.trainer_programs(config, mesh, num_train_records=64):
    jitted, args = recorder.calls.pop(program.name)
    global_batch = next(iter(args[1].values())).shape[0]
    trainer = jitted.lower(*args).as_text()
    assert program.jitted.lower(*program.abstract_args(global_batch)).as_text() == trainer, program.name
  assert not recorder.calls

  # The comparison sees what could make the two differ: the donation, the batch's sharding, its layout.
  (train,) = preflight.trainer_programs(config, mesh, include=('train',), num_train_records=64)
  state, batch = train.abstract_args(smoke.batch_size)
  text = train.jitted.lower(state, batch).as_text()
  cfg = config_files.stage_config(config, 'classification')
  task = preflight.stage_task(config)[1]
  built, _ = loop.stage_programs(cfg, task, mesh, 64)
  step = functools.partial(step_lib.train_step, loss_fn=task.loss_fn, tx=built.tx, schedule=built.schedule,
                           skip_nonfinite=cfg.skip_nonfinite)
  rep, data = mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)
  wiring = lambda batch_sharding, donate: jax.jit(step, in_shardings=(rep, batch_sharding), out_shardings=(rep, rep),
                                                  donate_argnums=donate)
  assert wiring(data, 0).lower(state, batch).as_text() == text  # the builder's wiring, written out: same text
  assert wiring(data, ()).lower(state, batch).as_text() != text  # no donation
  replicated_batch = {k: v.update(sharding=rep) for k, v in batch.items()}
  assert wiring(rep, 0).lower(state, replicated_batch).as_text() != text  # the batch not split over 'data'
  wider = {**batch, 'image': batch['image'].update(shape=(smoke.batch_size, 72, 72, 3))}
  assert train.jitted.lower(state, wider).as_text() != text  # another batch layout


def _random_like(shapes, seed):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(s.dtype), shapes)


def test_the_compiled_init_holds_no_weights(smoke):
  """A later stage and `config.init` copy trained weights over the fresh init outside jit: the lowered init
  and state programs have no constant over 1 KiB, where copying inside the jitted init compiled them in."""
  mesh, key = mesh_lib.make_mesh(), jax.random.key(0)
  _, loc_task = loop.stage_task(smoke, 'localization')
  previous = _random_like(jax.eval_shape(loc_task.init_params, key), 1)  # a trained localization stage
  previous_bytes = sum(x.nbytes for x in jax.tree.leaves(previous))
  cfg, det_task = loop.stage_task(smoke, 'detection', previous_params=previous)
  classifier = _random_like(jax.eval_shape(loop.stage_task(smoke, 'classification')[1].init_params, key), 2)
  task = transfer.initialise(det_task, transfer.Source(classifier, 'test'), layers='features')
  built, _ = loop.stage_programs(cfg, task, mesh, 64)
  for text in (built.init_params.lower(key).as_text(), built.create_state.lower(built.state.params, key).as_text()):
    assert max(constant_bytes(text), default=0) < 1024
  # What the same weights cost when the jitted init closes over them: every copied layer a constant.
  baked = jax.jit(lambda rng: task.initial_params(rng)).lower(key).as_text()
  assert sum(constant_bytes(baked)) > previous_bytes // 2
