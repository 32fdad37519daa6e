"""The tasks (paper sections 3-5): classification, localization, detection; each owns its networks, loss,
evaluation and summary. The trainer (`train/`), the inference tools and the sweeps use them; they import
nothing from `train/` and no ml_collections (they read `settings.StageSettings`).

`TASKS` is the one registry: name -> `make_task(settings, previous_params=None) -> Task`, in training order
(`settings.TASK_NAMES`); `make(settings, previous_params)` builds the task `settings.stage` names.
"""

from typing import Any, Callable

from overfeat_jax.errors import InputError
from overfeat_jax.settings import TASK_NAMES, StageSettings
from overfeat_jax.tasks import classification, detection, localization
from overfeat_jax.tasks.task import Task

TASKS: dict[str, Callable[..., Task]] = {'classification': classification.make_task,
                                         'localization': localization.make_task,
                                         'detection': detection.make_task}
assert tuple(TASKS) == TASK_NAMES


def make(settings: StageSettings, previous_params: Any = None) -> Task:
  """The task of `settings.stage`, built from `settings` (and the previous stage's params, if any).

  Raises:
    InputError: an unknown stage name.
  """
  if settings.stage not in TASKS:
    raise InputError(f'unknown stage {settings.stage!r}; available: {list(TASK_NAMES)}')
  return TASKS[settings.stage](settings, previous_params=previous_params)
