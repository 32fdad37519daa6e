"""CPU seconds of this process and of every process it started (grain workers), for per-core input figures.

`time.process_time()` counts only this process; with `worker_count > 0` the decoding runs in grain's worker
processes, so images per CPU-second must add theirs. Linux only (reads /proc); elsewhere the children count 0.
"""

import os
import time


def _children() -> dict[int, list[int]]:
  """parent pid -> child pids, from /proc/<pid>/stat (field 4 after the command name)."""
  tree: dict[int, list[int]] = {}
  for name in os.listdir('/proc') if os.path.isdir('/proc') else ():
    if name.isdigit():
      try:
        with open(f'/proc/{name}/stat') as f:
          fields = f.read().rsplit(')', 1)[1].split()
      except OSError:  # exited meanwhile
        continue
      tree.setdefault(int(fields[1]), []).append(int(name))
  return tree


def descendants_cpu_seconds() -> float:
  """User + system CPU seconds of the live descendants of this process (0 where /proc is missing)."""
  tree, ticks, total = _children(), os.sysconf('SC_CLK_TCK'), 0.0
  pending = list(tree.get(os.getpid(), []))
  while pending:
    pid = pending.pop()
    pending.extend(tree.get(pid, []))
    try:
      with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    except OSError:
      continue
    total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14 and 15 of stat)
  return total


def tree_cpu_seconds() -> float:
  """CPU seconds of this process (all threads) plus its live descendants: take differences around a run."""
  return time.process_time() + descendants_cpu_seconds()
