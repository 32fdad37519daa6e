"""Every speed benchmark runs end to end at tiny sizes on CPU and prints the fields its results table needs.

Why: the benchmarks are meant for a GPU that this machine does not have; these runs prove that each one works
(flags, compilation, timing, the printed table) so that `run_all_gpu.sh` can be run there as is. No speed is
asserted. Each script runs as a subprocess exactly as a user runs it, on one CPU device.
"""

import os
import re
import subprocess
import sys

import pytest

from tests import xla_flags

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, 'experiments', 'benchmarks')
TINY = ['--geometry=small', '--width_divisor=32', '--num_classes=4']


def run(script: str, *args: str, timeout: int = 300) -> str:
  """Runs a benchmark script on one CPU device; returns its stdout (fails the test with stderr on error)."""
  env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS=xla_flags.xla_flags(1),
             PYTHONPATH=ROOT)
  proc = subprocess.run([sys.executable, os.path.join(BENCH, script), *args], capture_output=True, text=True,
                        env=env, cwd=ROOT, timeout=timeout)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout


def table_rows(text: str, columns: int) -> list[list[str]]:
  """Markdown data rows with `columns` cells (header and separator excluded)."""
  rows = [[c.strip() for c in line.strip().strip('|').split('|')] for line in text.splitlines()
          if line.startswith('|') and not line.startswith('|---')]
  return [r for r in rows[1:] if len(r) == columns]


@pytest.mark.slow  # ~10 compilations (two variants, the batch search, localization): 30-60 s on 2 busy cores
def test_dense_inference_prints_rates_memory_and_merge_share():
  out = run('dense_inference.py', *TINY, '--input_size=64', '--scales=64x64,80x80', '--batch=2', '--steps=1',
            '--dtypes=float32', '--variants=vmap,gather', '--find_max_batch', '--memory_limit_gb=0.01',
            '--max_batch_cap=4', '--localize', '--localize_batch=2', timeout=900)
  assert 'device: cpu' in out and 'GFLOP/img' in out
  rows = table_rows(out, 8)
  assert [r[0] for r in rows] == ['vmap', 'gather']
  for r in rows:
    assert r[1] == 'float32' and r[2] == '2' and float(r[5]) > 0  # img/s measured
  for variant in ('vmap', 'gather'):
    m = re.search(rf'max batch \({variant}, float32\): predicted (\d+), ran (\d+) at ([\d.]+) img/s.*'
                  r'memory per image ([\d.]+) MiB', out)
    assert m, out
    assert 1 <= int(m.group(2)) <= int(m.group(1)) <= 4 and float(m.group(4)) > 0
  m = re.search(r'localization \(float32.*merge share ([\d.]+)% \(alone\)', out)
  assert m and 0 <= float(m.group(1)) <= 100


def test_dense_inference_rejects_bad_scales():
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT)
  proc = subprocess.run([sys.executable, os.path.join(BENCH, 'dense_inference.py'), '--scales=big'],
                        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
  assert proc.returncode == 2 and 'error' in proc.stderr and '--scales' in proc.stderr


@pytest.mark.slow  # four programs compiled: ~25 CPU-seconds
def test_hlo_report_summarises_train_and_dense_programs(tmp_path):
  out = run('hlo_report.py', *TINY, '--train_batch=4', '--batch=1', '--input_size=64', '--scales=64x64',
            '--noflips', f'--out_dir={tmp_path}')
  for name in ('train_float32', 'train_bfloat16', 'dense_vmap', 'dense_gather'):
    assert f'### {name}' in out
    assert (tmp_path / f'{name}.hlo.txt').stat().st_size > 0
    assert (tmp_path / f'{name}.stablehlo.mlir').stat().st_size > 0
  # The model hands XLA NHWC convolutions in the compute dtype; the train step donates its whole state.
  sections = dict(re.findall(r'### (\w+)\n((?:- .*\n?)+)', out))
  assert 'operand dtypes bf16/bf16: 23' in sections['train_bfloat16']
  assert 'operand dtypes f32/f32: 23' in sections['train_float32']
  assert '[b, 0, 1, f]x[0, 1, i, o]->[b, 0, 1, f]' in sections['dense_vmap']
  assert re.search(r'donated \(aliased\) inputs: [1-9]', sections['train_bfloat16'])
  assert 'host transfers/callbacks: -' in sections['train_bfloat16']
  # The library's offset pooling has no gather; the former vmap over traced offsets had (the measured change).
  assert re.search(r' 0 gathers', sections['dense_vmap'])
  assert re.search(r' [1-9]\d* gathers', sections['dense_gather'])


def test_input_pipeline_prints_its_rows_and_sizes_the_cores():
  out = run('input_pipeline.py', '--num_images=3', '--seconds=0.05', '--stored_quality=90', '--worker_counts=1')
  assert re.search(r'341x256 \(quality 90\) mean [\d.]+ KB', out), out
  rows = {r[0]: r for r in table_rows(out, 3)}
  for name in ('decode only (simplejpeg), stored 341x256', 'pipeline.train_iterator (grain), stored 341x256',
               'pipeline.train_iterator, 1 worker process, stored 341x256'):
    assert float(rows[name][1]) > 0 and float(rows[name][2]) > 0, name
  cores = r'at [\d,]+ images per CPU-second per core: 16,000 img/s needs \d+ cores, 30,000 img/s needs \d+ cores'
  assert re.fullmatch(cores + r' \(.*\)', out.strip().splitlines()[-2]), out
  assert re.fullmatch(r'with 1 worker process \(CPU of the workers and this process\): ' + cores + r' \(.*\)',
                      out.strip().splitlines()[-1]), out


@pytest.mark.slow  # builds a tfds dataset from JPEGs and compiles a train step: ~20-40 s on 2 busy cores
def test_train_from_pipeline_reports_input_compute_and_wait(tmp_path):
  out = run('train_from_pipeline.py', *TINY[:2], '--batch=4', '--num_images=12', '--num_synsets=3',
            '--image_size=96x72', '--resize_smaller=72', '--steps=2', '--warmup=1', f'--workdir={tmp_path}',
            timeout=600)
  assert re.search(r'data: 12 JPEGs 96x72', out), out
  rows = {(r[0], r[1]): r for r in table_rows(out, 8)}
  assert set(rows) == {('', 'compute only'), ('0', 'input only'), ('0', 'end to end')}
  for r in rows.values():
    assert float(r[2]) > 0 and float(r[3]) > 0  # ms/step and img/s
  assert float(rows['0', 'input only'][4]) > 0  # images per CPU-second
  assert 0 <= float(rows['0', 'end to end'][5]) <= 100 and 0 < float(rows['0', 'end to end'][7]) <= 100
  assert out.count('verdict (0 workers): the accelerator') == 1
  assert re.fullmatch(r'input pipeline: \d+ img/s per CPU-second \(workers 0: \d+ img/s wall\)',
                      out.strip().splitlines()[-1]), out
  # The JPEGs went through the project's ImageNet builder (Kaggle layout, config `original`).
  assert list(tmp_path.glob('tfds_*/ilsvrc2012_cls_loc/original/1.0.0'))


@pytest.mark.slow  # builds a tiny embedded dataset and compiles two train steps
def test_bf16_vs_f32_writes_both_curves_and_gaps(tmp_path):
  png = tmp_path / 'curves.png'
  out = run('bf16_vs_f32.py', '--steps=3', '--batch=8', '--width_divisor=32', '--train_size=32', '--smooth=2',
            f'--data_dir={tmp_path / "tfds"}', f'--out={png}')
  rows = {r[0]: r for r in table_rows(out, 5)}
  assert set(rows) == {'float32', 'bfloat16'}
  # Same init, data and dropout keys: the first losses agree to bf16 precision, yet are computed separately.
  first32, first16 = float(rows['float32'][1]), float(rows['bfloat16'][1])
  assert abs(first32 - first16) / first32 < 0.05
  gaps = dict(re.findall(r'(\w+_gap\w*)=([\d.]+)', out))
  assert set(gaps) == {'max_rel_gap', 'mean_rel_gap', 'max_rel_gap_smoothed', 'mean_rel_gap_smoothed'}
  assert float(gaps['max_rel_gap']) >= float(gaps['mean_rel_gap']) >= 0
  assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def _defined_flags(script: str) -> set[str]:
  with open(os.path.join(BENCH, script)) as f:
    text = f.read()
  names = set(re.findall(r"DEFINE_\w+\(\s*'(\w+)'", text))
  for imported in re.findall(r'^import (\w+)', text, re.M):  # flags of a sibling benchmark it imports
    if os.path.exists(os.path.join(BENCH, imported + '.py')):
      names |= _defined_flags(imported + '.py')
  return names


def test_run_all_gpu_names_existing_scripts_and_flags():
  env = dict(os.environ, DRY_RUN='1', PY='python')
  proc = subprocess.run(['bash', os.path.join(BENCH, 'run_all_gpu.sh')], capture_output=True, text=True,
                        env=env, cwd=ROOT, timeout=60)
  assert proc.returncode == 0, proc.stderr
  commands = [line.split() for line in proc.stdout.splitlines() if line.startswith('python ')]
  scripts = {os.path.basename(c[1]) for c in commands}
  assert {'dense_inference.py', 'hlo_report.py', 'train_from_pipeline.py', 'bf16_vs_f32.py',
          'flop_accounting.py'} <= scripts
  for command in commands:
    script = os.path.basename(command[1])
    known = _defined_flags(script)
    for arg in command[2:]:
      name = arg.lstrip('-').split('=')[0]
      name = name[2:] if name.startswith('no') and name[2:] in known else name
      assert name in known, f'{script} has no flag --{name}'
