r"""What XLA makes of the train step and of dense inference: dumps both and summarises what costs speed.

For each program (the trainer's real `jit_train_step` of the classification loss, in float32 and bfloat16; the
dense six-scale classifier, offsets by vmap and folded into the batch), on the current backend:
  - StableHLO (before XLA's passes, the same on every backend): convolutions, their operand dtypes and
    dimension numbers (does the model hand XLA NHWC bf16 convolutions?), converts, gathers, transposes;
  - the compiled HLO (after them): convolutions (or cuDNN custom calls on a GPU) with dtypes and `dim_labels`
    (b01f = NHWC), fusions, copies and transposes (layout changes) with their sizes, collectives, host
    transfers and callbacks (send/recv/infeed/outfeed/host callbacks: a host round trip inside the step), the
    donated (aliased) inputs, and XLA's memory and FLOP counts.
The text of both is written to `--out_dir` for reading. On a CPU, bf16 convolutions are upcast to f32 by the
CPU backend (it has no bf16 convolution): the compiled rows then show f32 convolutions fed by converts,
which a GPU run does not; the StableHLO rows tell what the model asked for.

  python experiments/benchmarks/hlo_report.py --out_dir=/tmp/hlo [--geometry=fast --batch=256]
  JAX_PLATFORMS=cpu python experiments/benchmarks/hlo_report.py --geometry=small --width_divisor=32 \
      --num_classes=10 --batch=8 --scales=64x64,80x80 --out_dir=/tmp/hlo
"""

import collections
import os
import re
import sys
from typing import Callable

from absl import flags
import jax
import jax.numpy as jnp
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dense_inference  # pylint: disable=g-import-not-at-top,wrong-import-position

from overfeat_jax import cli
from overfeat_jax.models import get_geometry
from overfeat_jax.models.overfeat import OverFeat, init_params
from overfeat_jax.parallel import mesh as mesh_lib
from overfeat_jax.tasks import losses
from overfeat_jax.train import optim
from overfeat_jax.train import state as state_lib
from overfeat_jax.train import step as step_lib

_OUT = flags.DEFINE_string('out_dir', '/tmp/overfeat_hlo', 'Where the StableHLO and HLO texts are written.')
_TRAIN_BATCH = flags.DEFINE_integer('train_batch', 256, 'Global batch of the train step.')
_PROGRAMS = flags.DEFINE_list('programs', ['train_float32', 'train_bfloat16', 'dense_vmap', 'dense_gather'],
                              'Which programs: train_<dtype>, dense_<variant> (dense in bfloat16).')

# Ops that move data between host and device inside a program: each is a round trip in the step.
HOST_OPS = ('send', 'recv', 'send-done', 'recv-done', 'infeed', 'outfeed')
COLLECTIVES = ('all-reduce', 'all-gather', 'reduce-scatter', 'collective-permute', 'all-to-all')
_LINE = re.compile(r'^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.+?)\s+([a-z][\w\-]*)\((.*)$')
_ELEM = re.compile(r'\b(pred|[subf]\d+|bf16|f8\w*)\[([\d,]*)\]')
_BYTES = {'pred': 1, 'bf16': 2}


def array_bytes(type_text: str) -> int:
  """Bytes of the (first) array in an HLO type like `bf16[8,56,56,96]{3,2,1,0}`."""
  m = _ELEM.search(type_text)
  if not m:
    return 0
  dtype, dims = m.groups()
  size = _BYTES.get(dtype, max(int(re.sub(r'\D', '', dtype) or 8) // 8, 1))
  for d in filter(None, dims.split(',')):
    size *= int(d)
  return size


def parse_hlo(text: str) -> list[dict]:
  """Every instruction of every computation: {name, type, op, operands, attrs}."""
  rows = []
  for line in text.splitlines():
    m = _LINE.match(line)
    if m:
      name, type_text, op, rest = m.groups()
      rows.append({'name': name, 'type': type_text, 'op': op, 'rest': rest,
                   'operands': re.findall(r'%([\w.\-]+)', rest.split(')')[0])})
  return rows


def is_conv(row: dict) -> bool:
  return row['op'] == 'convolution' or (row['op'] == 'custom-call' and 'conv' in row['rest'].lower())


def elem_type(type_text: str) -> str:
  m = _ELEM.search(type_text)
  return m.group(1) if m else '?'


def summarize_hlo(text: str) -> dict:
  """Counts and findings of a compiled HLO module's text."""
  rows = parse_hlo(text)
  types = {r['name']: r['type'] for r in rows}
  ops = collections.Counter(r['op'] for r in rows)
  convs = [r for r in rows if is_conv(r)]
  conv_kinds = collections.Counter(
      (elem_type(r['type']), '/'.join(elem_type(types.get(o, '')) for o in r['operands'][:2]),
       (re.search(r'dim_labels=([\w>\-]+)', r['rest']) or [None, '?'])[1]) for r in convs)
  moves = sorted(((array_bytes(r['type']), r['op'], r['type'].split('{')[0]) for r in rows
                  if r['op'] in ('copy', 'transpose')), reverse=True)
  source = lambda r: elem_type(types.get(r['operands'][0], '')) if r['operands'] else '?'
  converts = sorted(((array_bytes(r['type']), f"{source(r)}->{elem_type(r['type'])}", r['type'].split('{')[0])
                     for r in rows if r['op'] == 'convert'), reverse=True)
  header = text.splitlines()[0] if text else ''
  alias = re.search(r'input_output_alias=\{(.*?)\}\s*(,\s*\w+=|$)', header)
  callbacks = [r for r in rows if r['op'] == 'custom-call' and re.search(r'callback|host', r['rest'], re.I)]
  return {
      'instructions': len(rows), 'fusions': ops['fusion'], 'convs': len(convs), 'conv_kinds': conv_kinds,
      'copies': ops['copy'], 'transposes': ops['transpose'], 'moves': moves[:3],
      'converts': ops['convert'], 'biggest_converts': converts[:3], 'gathers': ops['gather'],
      'collectives': {c: ops[c] + ops[c + '-start'] for c in COLLECTIVES if ops[c] + ops[c + '-start']},
      'host_ops': {h: ops[h] for h in HOST_OPS if ops[h]} | ({'host callbacks': len(callbacks)} if callbacks
                                                             else {}),
      'aliased_inputs': len(re.findall(r'\{[\d,\s]*\}:\s*\(', alias.group(1))) if alias else 0,
  }


def summarize_stablehlo(text: str) -> dict:
  """Convolutions as the model wrote them: operand dtypes and dimension numbers; converts, gathers."""
  dtypes, dims = collections.Counter(), collections.Counter()
  for line in text.splitlines():
    if 'stablehlo.convolution' not in line:
      continue
    d = re.search(r'dim_numbers = (.*?->\[[^\]]*\])', line)
    t = re.search(r':\s*\(tensor<([^>]*)>, tensor<([^>]*)>\)', line)
    dims[d.group(1) if d else '?'] += 1
    dtypes['/'.join(x.split('x')[-1] for x in t.groups()) if t else '?'] += 1
  return {'convs': sum(dtypes.values()), 'conv_dtypes': dtypes, 'dim_numbers': dims,
          'converts': text.count('stablehlo.convert'), 'gathers': text.count('"stablehlo.gather"')
          + text.count('stablehlo.gather('), 'transposes': text.count('stablehlo.transpose')}


def train_program(dtype_name: str):
  """The trainer's jitted step (classification loss, SGD momentum + coupled L2) on abstract inputs."""
  geometry = get_geometry(dense_inference._GEOMETRY.value, dense_inference._DIVISOR.value)
  model = OverFeat(geometry, num_classes=dense_inference._CLASSES.value,
                   dtype=dense_inference.DTYPES[dtype_name])

  def loss_fn(params, batch, rng, *, train):
    logits = model.apply({'params': params}, batch['image'], train=train, rngs={'dropout': rng})
    logits = logits.reshape(logits.shape[0], -1)
    return losses.softmax_cross_entropy(logits, batch['label']), {}

  schedule = optax.constant_schedule(0.05)
  tx = optim.make_optimizer('sgd', schedule, momentum=0.6, weight_decay=1e-5)
  state = jax.eval_shape(lambda rng: state_lib.create(init_params(model, rng), tx, rng), jax.random.key(0))
  mesh = mesh_lib.make_mesh()
  step = step_lib.jit_train_step(mesh, loss_fn=loss_fn, tx=tx, schedule=schedule)
  size, batch = geometry.input_size, _TRAIN_BATCH.value
  batch_spec = {'image': jax.ShapeDtypeStruct((batch, size, size, 3), jnp.uint8),
                'label': jax.ShapeDtypeStruct((batch,), jnp.int32)}
  return step.lower(state, batch_spec)


def dense_program(variant: str):
  """The dense multi-scale classifier (bfloat16 compute) of `dense_inference`, lowered on abstract images."""
  model, params = dense_inference.make_model('bfloat16')
  scales = dense_inference.parse_scales(dense_inference._SCALES.value)
  fn = dense_inference.classify_fn(model, variant, scales, dense_inference._FLIPS.value)
  s = dense_inference._INPUT.value
  return fn.lower(params, jax.ShapeDtypeStruct((dense_inference._BATCH.value, s, s, 3), jnp.uint8))


def program(name: str) -> Callable[[], object]:
  kind, _, arg = name.partition('_')
  if kind == 'train' and arg in dense_inference.DTYPES:
    return lambda: train_program(arg)
  if kind == 'dense' and arg in dense_inference.VARIANTS:
    return lambda: dense_program(arg)
  from overfeat_jax.errors import InputError  # pylint: disable=g-import-not-at-top
  raise InputError(f'unknown program {name!r}; use train_<float32|bfloat16> or dense_<vmap|fold|gather>')


def fmt(counter) -> str:
  items = [f'{k if isinstance(k, str) else " ".join(map(str, k))}: {v}' for k, v in counter.items()]
  return ', '.join(items) or '-'


def report(name: str, lowered) -> list[str]:
  """Writes the two texts of one program and returns its summary rows."""
  stable = lowered.as_text()
  compiled = lowered.compile()
  hlo = compiled.as_text()
  for suffix, text in (('stablehlo.mlir', stable), ('hlo.txt', hlo)):
    with open(os.path.join(_OUT.value, f'{name}.{suffix}'), 'w') as f:
      f.write(text)
  s, h = summarize_stablehlo(stable), summarize_hlo(hlo)
  mem = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  cost = (cost[0] if isinstance(cost, (list, tuple)) else cost) or {}
  return [
      f'### {name}',
      f'- stablehlo: {s["convs"]} convolutions, operand dtypes {fmt(s["conv_dtypes"])}; dims '
      f'{fmt(s["dim_numbers"])}; {s["converts"]} converts, {s["gathers"]} gathers, '
      f'{s["transposes"]} transposes',
      f'- compiled: {h["instructions"]} instructions, {h["fusions"]} fusions, {h["convs"]} convolutions '
      f'(out dtype, operand dtypes, dim_labels: {fmt(h["conv_kinds"])})',
      f'- layout changes: {h["copies"]} copies, {h["transposes"]} transposes; largest '
      + ('; '.join(f'{op} {t} {b / 2**20:.1f} MiB' for b, op, t in h['moves']) or '-'),
      f'- converts: {h["converts"]}; largest ' + ('; '.join(f'{d} {t} {b / 2**20:.1f} MiB'
                                                           for b, d, t in h['biggest_converts']) or '-')
      + f'; gathers: {h["gathers"]}',
      f'- collectives: {fmt(h["collectives"])}; host transfers/callbacks: {fmt(h["host_ops"])}; '
      f'donated (aliased) inputs: {h["aliased_inputs"]}',
      f'- memory: arguments {mem.argument_size_in_bytes / 2**20:.1f} MiB, outputs '
      f'{mem.output_size_in_bytes / 2**20:.1f} MiB, temporaries {mem.temp_size_in_bytes / 2**20:.1f} MiB, '
      f'aliased '
      f'{mem.alias_size_in_bytes / 2**20:.1f} MiB; XLA flops {cost.get("flops", float("nan")) / 1e9:.2f} G'
      if mem is not None else '- memory: not reported by this backend',
  ]


def main(argv: list[str]) -> None:
  del argv
  os.makedirs(_OUT.value, exist_ok=True)
  print('\n'.join(dense_inference.environment_lines()))
  print(f'network: {dense_inference._GEOMETRY.value} / {dense_inference._DIVISOR.value}, '
        f'{dense_inference._CLASSES.value} classes; train batch {_TRAIN_BATCH.value}; dense batch '
        f'{dense_inference._BATCH.value}, scales {dense_inference._SCALES.value}; texts in {_OUT.value}')
  builders = [(name, program(name)) for name in _PROGRAMS.value]
  for name, build in builders:
    print('\n'.join(report(name, build())), flush=True)


if __name__ == '__main__':
  cli.run(main)
