"""Shared test helpers: loading a config file by path, tiny batches."""

import importlib.util
import os

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = os.path.join(REPO, 'experiments', 'configs')


def load_config(name: str, arg: str = ''):
  spec = importlib.util.spec_from_file_location(f'test_config_{name}', os.path.join(CONFIGS, f'{name}.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def random_batch(seed: int, batch: int, size: int, num_classes: int) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  return {'image': rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8),
          'label': rng.integers(0, num_classes, (batch,)).astype(np.int32)}
