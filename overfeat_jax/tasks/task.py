"""What a training stage is, as data: the one interface the loop, predict, the sweeps and export know.

Why a dataclass of pure functions and not a class hierarchy: the loop jits these functions once with shardings,
so they must be pure and take only arrays; a task is built once from its typed settings
(`settings.StageSettings`, read from the config at the edge by `config_files.settings_from_config`) through
the one registry `tasks.TASKS` (name -> `make_task(settings, previous_params)`). No config object is closed
over by a traced function: the settings are frozen dataclasses of numbers, names and tuples.

A later stage reads the earlier stage's parameters (e.g. localization fixes layers 1-5 of the classifier):
`make_task(settings, previous_params=...)` receives them; its `warm_start` copies what it needs over the fresh
`init_params(rng)` (outside jit: weights closed over by a jitted init would be compiled into it as constants),
and its `trainable_mask` marks the frozen parts False (the optimizer then leaves them bit for bit unchanged).
"""
import dataclasses
from typing import Any, Callable, Mapping

import jax
import numpy as np

from overfeat_jax.settings import StageSettings

Params = Any
Batch = Mapping[str, jax.Array]
# (params, batch, rng, *, train) -> (scalar loss, {name: scalar}) ; the batch is the global batch.
LossFn = Callable[..., tuple[jax.Array, dict[str, jax.Array]]]
# (params, batch) -> {name: [B, ...] per-example array}; the batch has a bool `mask` [B] (False = padding).
EvalStepFn = Callable[[Params, Batch], dict[str, jax.Array]]
# {name: [N, ...] numpy, padding removed, all processes' examples} -> {metric name: float}
SummarizeFn = Callable[[dict[str, np.ndarray]], dict[str, float]]


@dataclasses.dataclass(frozen=True)
class Evaluation:
  """One evaluation of a task: which input view it reads, what it computes per example, how it sums up.

  Attributes:
    name: prefix of its metrics, e.g. 'center_crop' -> 'center_crop/top1_error'.
    view: the eval pipeline's view, 'center_crop' or 'resize' (`data.pipeline.eval_iterator`).
    size: the view's image size in pixels.
    eval_step: pure per-example outputs; jitted once by the loop, outputs replicated to every process.
    summarize: host-side reduction of every example's outputs to metrics (lower is better for errors).
  """
  name: str
  view: str
  size: int
  eval_step: EvalStepFn
  summarize: SummarizeFn


@dataclasses.dataclass(frozen=True)
class Task:
  """A training stage.

  Attributes:
    name: 'classification', 'localization' or 'detection'.
    init_params: rng -> the full parameter tree, freshly initialised: a pure function of the rng (it is jitted;
      it must close over no arrays).
    loss_fn: (params, batch, rng, *, train) -> (loss, aux metrics); `rng` drives dropout only.
    trainable_mask: params -> same tree of bools; False leaves are excluded from the optimizer (set to zero).
    evaluations: what to evaluate during and after training.
    best_metric: the '<evaluation>/<metric>' whose minimum picks the best checkpoint kept besides the latest.
    model: the network: an `OverFeat` (classification) or an `inference.localize.BoxModel` (classifier and
      regressor: localization, detection); for the benchmark, the inference tools and later stages.
    warm_start: fresh params -> params with trained weights copied in (the previous stage's, `config.init`'s),
      called eagerly, outside jit, on the devices' arrays; may return host (numpy) leaves, which
      `train.programs` places. None: the fresh initialisation is the start.
    settings: the stage's typed settings the task was built from (network, evaluation, box section).
    predictor: (params, images [B, S, S, 3], 0..255) -> the stage's predictions on whole images resized to the
      square view S = `predictor_size` (for `predict` and the sweeps); None until a task provides one.
    predictor_size: S, the view's side in pixels (0 without a predictor).
    cold_start: what a fresh start means for this stage (e.g. localization's random, frozen layers 1-5): the
      trainer logs it as a warning when nothing warm-starts the stage (`warm_start` None); '' when a fresh
      start is normal (classification).
  """
  name: str
  init_params: Callable[[jax.Array], Params]
  loss_fn: LossFn
  trainable_mask: Callable[[Params], Any]
  evaluations: tuple[Evaluation, ...]
  best_metric: str
  model: Any = None
  warm_start: Callable[[Params], Params] | None = None
  settings: StageSettings | None = None
  predictor: Callable[[Params, jax.Array], Any] | None = None
  predictor_size: int = 0
  cold_start: str = ''

  def initial_params(self, rng: jax.Array) -> Params:
    """`init_params(rng)` then `warm_start`, eagerly: the parameters a fresh run starts from (tools, tests)."""
    params = self.init_params(rng)
    return params if self.warm_start is None else self.warm_start(params)


def all_trainable(params: Params) -> Any:
  """The mask of a task that trains everything."""
  return jax.tree.map(lambda _: True, params)
