"""Ahead-of-time compilation of jitted programs for a mesh, and what the compiled executables say.

Why: a pod run that does not fit in HBM, or whose step contains an unexpected collective, fails minutes into
the allocation. Compiling a jitted function on abstract inputs (`jax.ShapeDtypeStruct` with shardings; nothing
is allocated) over a mesh of compile-only TPU devices (`parallel.topology`) gives the TPU executable itself:
its per-device memory (`memory_analysis`), FLOPs (`cost_analysis`) and collectives (its HLO), or the TPU
compiler's out-of-memory error, for which the largest per-device batch that fits is found by bisection.
Which programs are compiled (the trainer's own train and evaluation steps) is `train.preflight`'s business:
this module knows nothing of training.

`cost_analysis()['optimal_seconds']` is not used: libtpu reports negative values for it on v4 and v5e.
"""

import dataclasses
import re
import time
from typing import Any, Callable, Sequence

import jax

COLLECTIVES = ('all-reduce', 'all-gather', 'reduce-scatter', 'all-to-all', 'collective-permute')
# An op of the optimised HLO: `all-reduce(` or the async `all-reduce-start(` (its `-done` is the same op).
_COLLECTIVE_OP = re.compile(r'\b(' + '|'.join(COLLECTIVES) + r')(?:-start)?\(')
# The TPU compiler's out-of-memory errors ("Ran out of memory in memory space hbm ...", RESOURCE_EXHAUSTED).
_OOM = re.compile(r'RESOURCE_EXHAUSTED|[Rr]an out of memory|exceeds available HBM|Out of memory')
# Across slices (multislice) XLA splits an all-reduce hierarchically: reduce-scatter inside each slice,
# all-reduce over the data-centre network, all-gather inside each slice. Still pure data parallelism.
MULTISLICE_COLLECTIVES = frozenset({'reduce-scatter', 'all-gather'})


class DoesNotFit(Exception):
  """The compiler rejected a program for lack of device memory; the message is its one-line reason."""


@dataclasses.dataclass(frozen=True)
class Program:
  """One of the trainer's jitted functions and how to build its abstract arguments for a global batch.

  Attributes:
    name: 'train' or 'eval/<evaluation name>'.
    jitted: the trainer's own jitted function (shardings and donation included).
    abstract_args: global batch size -> the positional arguments as `jax.ShapeDtypeStruct`s with shardings.
    global_batch: the batch the config asks for.
    expected_collectives: collectives that data parallelism explains (anything else is flagged).
  """
  name: str
  jitted: Callable
  abstract_args: Callable[[int], tuple]
  global_batch: int
  expected_collectives: frozenset[str]


@dataclasses.dataclass
class CompileReport:
  """What one compilation says, per device. Memory in bytes; `fits` False means the compiler said OOM."""
  program: str
  global_batch: int
  per_device_batch: int
  fits: bool
  compile_seconds: float
  memory: dict[str, int] = dataclasses.field(default_factory=dict)
  flops: float | None = None
  bytes_accessed: float | None = None
  collectives: dict[str, int] = dataclasses.field(default_factory=dict)
  unexpected_collectives: list[str] = dataclasses.field(default_factory=list)
  argument_shardings: list[list[str]] = dataclasses.field(default_factory=list)
  error: str | None = None


@dataclasses.dataclass
class FitSearch:
  """Bisection over per-device batches: `largest_fitting` compiled (0: not even 1), `smallest_failing` not.

  The answer is exact when `smallest_failing == largest_fitting + 1`; otherwise the compile budget ran out.
  """
  largest_fitting: int
  smallest_failing: int
  compiles: int
  fitting_report: CompileReport | None = None

  @property
  def exact(self) -> bool:
    return self.smallest_failing == self.largest_fitting + 1


# --- analysis of a compiled executable ----------------------------------------------------------------------
def count_collectives(hlo_text: str) -> dict[str, int]:
  """Number of each collective op in an HLO module's text (async start/done pairs count once)."""
  counts = {name: 0 for name in COLLECTIVES}
  for match in _COLLECTIVE_OP.finditer(hlo_text):
    counts[match.group(1)] += 1
  return {name: n for name, n in counts.items() if n}


def memory_summary(compiled: Any) -> dict[str, int]:
  """Per-device bytes: arguments, outputs, temporaries, aliased (donated) buffers, code and the peak."""
  stats = compiled.memory_analysis()
  fields = {'argument': 'argument_size_in_bytes', 'output': 'output_size_in_bytes',
            'temp': 'temp_size_in_bytes', 'alias': 'alias_size_in_bytes',
            'generated_code': 'generated_code_size_in_bytes', 'peak': 'peak_memory_in_bytes'}
  return {key: int(getattr(stats, attr)) for key, attr in fields.items() if hasattr(stats, attr)}


def cost_summary(compiled: Any) -> tuple[float | None, float | None]:
  """(FLOPs, bytes accessed) per device and step, from XLA's cost analysis."""
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older jax: one dict per computation
    cost = cost[0] if cost else {}
  cost = cost or {}
  return cost.get('flops'), cost.get('bytes accessed')


def sharding_specs(compiled: Any) -> list[list[str]]:
  """For each positional argument, the distinct partition specs of its leaves (["P()"], ["P('data',)"])."""
  args, _ = compiled.input_shardings
  return [sorted({str(getattr(s, 'spec', s)) for s in jax.tree.leaves(arg)}) for arg in args]


def is_out_of_memory(error: Exception) -> bool:
  return bool(_OOM.search(str(error)))


def oom_line(error: Exception) -> str:
  """The compiler's sentence about memory, e.g. 'Ran out of memory in memory space hbm. Used 18.58G ...'."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  for line in lines:
    if _OOM.search(line) and ('G' in line or 'M' in line):
      return line[:300]
  return lines[0][:300] if lines else type(error).__name__


# --- compiling ----------------------------------------------------------------------------------------------
def compile_abstract(jitted: Callable, args: Sequence[Any]) -> tuple[Any, float]:
  """(compiled executable, seconds to lower and compile); raises DoesNotFit on the compiler's OOM."""
  start = time.perf_counter()
  try:
    compiled = jitted.lower(*args).compile()
  except Exception as e:  # pylint: disable=broad-except  (XLA raises JaxRuntimeError/XlaRuntimeError)
    if is_out_of_memory(e):
      raise DoesNotFit(oom_line(e)) from None
    raise
  return compiled, time.perf_counter() - start


def analyze(program: Program, compiled: Any, seconds: float, global_batch: int,
            num_devices: int) -> CompileReport:
  """The report of an executable that compiled: per-device memory, FLOPs, collectives, argument shardings."""
  flops, accessed = cost_summary(compiled)
  collectives = count_collectives(compiled.as_text())
  return CompileReport(
      program.name, global_batch, global_batch // num_devices, fits=True, compile_seconds=seconds,
      memory=memory_summary(compiled), flops=flops, bytes_accessed=accessed, collectives=collectives,
      unexpected_collectives=sorted(set(collectives) - program.expected_collectives),
      argument_shardings=sharding_specs(compiled))


def compile_report(program: Program, global_batch: int, num_devices: int) -> CompileReport:
  """Compiles `program` at `global_batch` and reads the executable (or records that it does not fit)."""
  start = time.perf_counter()
  try:
    compiled, seconds = compile_abstract(program.jitted, program.abstract_args(global_batch))
  except DoesNotFit as e:
    return CompileReport(program.name, global_batch, global_batch // num_devices, fits=False,
                         compile_seconds=time.perf_counter() - start, error=str(e))
  return analyze(program, compiled, seconds, global_batch, num_devices)


def bisect_largest(fits: Callable[[int], bool], failing: int, max_probes: int) -> tuple[int, int, int]:
  """(largest n that fits, smallest n that fails, probes) for a monotone `fits` over 1..failing-1.

  `failing` is known not to fit. Bisection on [0, failing): the first probes halve (a geometric search down),
  then it narrows; it stops after `max_probes` calls with the best bracket found.
  """
  lo, hi, probes = 0, failing, 0
  while hi - lo > 1 and probes < max_probes:
    mid = (lo + hi) // 2
    probes += 1
    if fits(mid):
      lo = mid
    else:
      hi = mid
  return lo, hi, probes


def search_fitting_batch(program: Program, failing_per_device: int, num_devices: int,
                         max_compiles: int) -> FitSearch:
  """The largest per-device batch of `program` that compiles, by bisection over at most `max_compiles`."""
  reports: dict[int, CompileReport] = {}

  def fits(per_device: int) -> bool:
    reports[per_device] = compile_report(program, per_device * num_devices, num_devices)
    return reports[per_device].fits

  lo, hi, probes = bisect_largest(fits, failing_per_device, max_compiles)
  return FitSearch(lo, hi, probes, reports.get(lo))


def check_program(program: Program, num_devices: int, max_compiles: int,
                  global_batch: int | None = None) -> tuple[CompileReport, FitSearch | None]:
  """Compiles `program` at its batch; if that does not fit, also finds the largest per-device batch that does.
  """
  batch = program.global_batch if global_batch is None else global_batch
  report = compile_report(program, batch, num_devices)
  if report.fits:
    return report, None
  return report, search_fitting_batch(program, report.per_device_batch, num_devices, max_compiles)
