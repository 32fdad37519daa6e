"""Text progress for log lines: a duration (`1h02m03s`) and a bar (`[#####.....]  50%`).

A bottom-level module (imports nothing from the project), so the trainer's console log (`train/logging.py`) and
the sweeps (`sweeps/runner.py`) write the same progress without one importing the other's package.
"""


def format_duration(seconds: float) -> str:
  """`seconds` (negative counts as 0, fractions dropped) as `MmSSs`, or `HhMMmSSs` from one hour up."""
  seconds = max(int(seconds), 0)
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f'{h}h{m:02d}m{s:02d}s' if h else f'{m}m{s:02d}s'


def progress_bar(done: int, total: int, width: int = 20) -> str:
  """`[#####...............]  25%`: `done` of `total` as a `width`-character bar, clipped to 0-100 %."""
  frac = min(max(done / max(total, 1), 0.0), 1.0)
  filled = int(round(frac * width))
  return f'[{"#" * filled}{"." * (width - filled)}] {100 * frac:3.0f}%'
