"""`finishes`: run a call under a time limit, so that a loop that never ends FAILS a test instead of hanging CI."""

import threading

import jax
import numpy as np
import pytest

LIMIT_S = 120  # generous: a first call compiles on a loaded 2-core machine; a hang runs for ever


def finishes(fn, *args, limit_s: float = LIMIT_S, **kwargs):
  """`fn(*args, **kwargs)` with its jax arrays fetched (numpy), or a test failure if it runs past `limit_s`.

  The call runs in a DAEMON thread (not a thread pool, whose workers are joined at exit), so the spinning
  thread of a failed call does not keep pytest from exiting. An exception of `fn` is re-raised here.
  """
  result, error = [], []

  def run():
    try:
      result.append(jax.tree.map(lambda x: np.asarray(x) if isinstance(x, jax.Array) else x, fn(*args, **kwargs)))
    except Exception as e:  # pylint: disable=broad-except  (re-raised in the test's own thread below)
      error.append(e)

  worker = threading.Thread(target=run, daemon=True)
  worker.start()
  worker.join(limit_s)
  if worker.is_alive():
    pytest.fail(f'{getattr(fn, "__name__", fn)} did not return within {limit_s} s (an endless loop?)')
  if error:
    raise error[0]
  return result[0]
