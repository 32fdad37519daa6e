"""`launch.slurm`: rendered sbatch scripts, validation, submission, a script run for real by a fake srun."""

import os
import pathlib
import stat
import subprocess
import sys

import pytest

from launch import common
from launch import slurm
from overfeat_jax.errors import InputError
from tests import xla_flags

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
BASE = dict(nodes=4, gpus_per_node=8, process_per='node', time_limit='12:00:00', job_name='of',
            code_dir='/shared/overfeat', config='experiments/configs/fast_imagenet.py',
            workdir='/shared/run1')

# Stands in for srun on one machine: starts SLURM_NTASKS local tasks with the variables srun would set.
FAKE_SRUN = """#!/bin/bash
set -euo pipefail
[[ "$1" == --kill-on-bad-exit=1 ]] && shift
[[ "$1" == --cpus-per-task=* ]] && shift
n=$SLURM_NTASKS; per=$((SLURM_NTASKS / SLURM_JOB_NUM_NODES)); pids=()
for ((i = 0; i < n; i++)); do
  SLURM_PROCID=$i SLURM_LOCALID=$((i % per)) SLURM_STEP_NUM_TASKS=$n \
    SLURM_STEP_NUM_NODES=$SLURM_JOB_NUM_NODES \
    "$@" > "$SRUN_LOG_DIR/task$i.log" 2>&1 & pids+=($!)
done
rc=0; for p in "${pids[@]}"; do wait "$p" || rc=$?; done; exit $rc
"""


def _executable(path: pathlib.Path, text: str) -> pathlib.Path:
  path.write_text(text)
  path.chmod(path.stat().st_mode | stat.S_IXUSR)
  return path


def test_one_process_per_node_script():
  script = slurm.render_script(**BASE, overrides=['--config.train.batch_size=1024'], partition='gpu',
                               account='proj', cpus_per_task=32, venv='/shared/venv', coordinator_port=29500)
  lines = script.splitlines()
  assert len(lines) < 30
  for expected in ['#SBATCH --nodes=4', '#SBATCH --ntasks-per-node=1', '#SBATCH --gpus-per-node=8',
                   '#SBATCH --time=12:00:00', '#SBATCH --partition=gpu', '#SBATCH --account=proj',
                   '#SBATCH --cpus-per-task=32', '#SBATCH --output=/shared/run1/slurm/%x-%j.out',
                   'set -euo pipefail', 'cd /shared/overfeat', 'source /shared/venv/bin/activate',
                   'export OVERFEAT_COORDINATOR_PORT=29500']:
    assert expected in lines, expected
  assert lines[-1] == ('srun --kill-on-bad-exit=1 --cpus-per-task=32 python -m overfeat_jax.main '
                       '--config=experiments/configs/fast_imagenet.py --workdir=/shared/run1 '
                       '--config.train.batch_size=1024')
  assert subprocess.run(['bash', '-n'], input=script, text=True).returncode == 0


@pytest.mark.parametrize('process_per, kw, header, srun', [
    ('node', {}, '#SBATCH --cpus-per-task=80', '--cpus-per-task=80'),  # 10 per GPU x 8 GPUs
    ('gpu', {}, '#SBATCH --cpus-per-task=10', '--cpus-per-task=10'),
    ('gpu', {'cpus_per_gpu': 14}, '#SBATCH --cpus-per-task=14', '--cpus-per-task=14'),
    ('node', {'cpus_per_task': 96, 'cpus_per_gpu': 3}, '#SBATCH --cpus-per-task=96', '--cpus-per-task=96'),
    ('node', {'cpus_per_gpu': 0, 'exclusive': True}, '#SBATCH --exclusive', None),
])
def test_the_script_asks_for_cpus_for_the_input_workers(process_per, kw, header, srun):
  lines = slurm.render_script(**{**BASE, 'process_per': process_per}, **kw).splitlines()
  assert header in lines
  if srun:
    assert lines[-1].startswith(f'srun --kill-on-bad-exit=1 {srun} python')
  else:
    assert not any('cpus-per-task' in line for line in lines)


@pytest.mark.parametrize('kw', [{'cpus_per_task': 0}, {'cpus_per_gpu': -1}])
def test_bad_cpu_counts_are_input_errors(kw):
  with pytest.raises(InputError, match='cpus_per'):
    slurm.render_script(**BASE, **kw)


def test_one_process_per_gpu_and_container():
  script = slurm.render_script(**{**BASE, 'process_per': 'gpu'}, container_image='nvcr.io/nvidia/jax:25.04',
                               setup=['module load cuda/12'])
  lines = script.splitlines()
  assert '#SBATCH --ntasks-per-node=8' in lines and '# 32 processes' in script
  assert 'module load cuda/12' in lines and not any(line.startswith('source') for line in lines)
  assert ('--container-image=nvcr.io/nvidia/jax:25.04 --container-mounts=/shared/overfeat:/shared/overfeat'
          in script)


@pytest.mark.parametrize('change, match', [
    ({'nodes': 0}, 'at least 1'), ({'time_limit': '3h'}, 'HH:MM:SS'), ({'job_name': 'a b'}, 'job_name'),
    ({'workdir': None}, 'required'), ({'config': ''}, 'required'),
])
def test_bad_values_are_input_errors(change, match):
  with pytest.raises(InputError, match=match):
    slurm.render_script(**{**BASE, **change})
  with pytest.raises(InputError, match='not a TCP port'):
    slurm.render_script(**BASE, coordinator_port=70000)


def test_split_overrides():
  argv = ['p', '--nodes=2', '--config.a=1', '--config=c.py', '--', '--x', 'y']
  own, overrides = common.split_overrides(argv)
  assert own == ['p', '--nodes=2', '--config=c.py'] and overrides == ['--config.a=1', '--x', 'y']
  with pytest.raises(InputError, match='FIELD=VALUE'):
    common.split_overrides(['p', '--config.a', '1'])


def _cli(*args, cwd=REPO_ROOT):
  return subprocess.run([sys.executable, '-m', 'launch.slurm', *args], cwd=cwd, capture_output=True,
                        text=True, env={**os.environ, 'PYTHONPATH': str(REPO_ROOT)})


def test_cli_dry_run_prints_the_script_and_writes_nothing(tmp_path):
  (tmp_path / 'c.py').write_text('')
  res = _cli(f'--code_dir={tmp_path}', '--config=c.py:smoke', f'--workdir={tmp_path}/w', '--config.x=1',
             '--nodes=2', '--dry_run', '--sbatch=/bin/false')
  assert res.returncode == 0, res.stderr
  assert res.stdout.splitlines()[-1].endswith('--config=c.py:smoke --workdir=' + f'{tmp_path}/w --config.x=1')
  assert not (tmp_path / 'w').exists()


def test_cli_errors_are_one_line_exit_2(tmp_path):
  res = _cli(f'--code_dir={tmp_path}', '--config=missing.py', '--workdir=w', '--dry_run')
  assert res.returncode == 2 and res.stderr.strip().count('\n') == 0
  assert 'missing.py does not exist' in res.stderr


def test_cli_writes_and_submits(tmp_path):
  (tmp_path / 'c.py').write_text('')
  sbatch = _executable(tmp_path / 'sbatch', '#!/bin/bash\necho "Submitted batch job 17 ($1)"\n')
  res = _cli(f'--code_dir={tmp_path}', '--config=c.py', f'--workdir={tmp_path}/w', f'--sbatch={sbatch}')
  assert res.returncode == 0, res.stderr
  script = tmp_path / 'w' / 'slurm' / 'overfeat.sbatch'
  assert f'Submitted batch job 17 ({script})' in res.stdout
  assert script.read_text().startswith('#!/bin/bash\n#SBATCH --job-name=overfeat')
  failing = _executable(tmp_path / 'bad_sbatch', '#!/bin/bash\nexit 1\n')
  res = _cli(f'--code_dir={tmp_path}', '--config=c.py', f'--workdir={tmp_path}/w', f'--sbatch={failing}')
  assert res.returncode == 2 and 'sbatch failed with exit code 1' in res.stderr


def test_cli_creates_the_log_folder_before_sbatch(tmp_path):
  """SLURM does not create the folder of `#SBATCH --output`; the launcher does, also with --script elsewhere."""
  (tmp_path / 'c.py').write_text('')
  logs = tmp_path / 'w' / 'slurm'
  sbatch = _executable(tmp_path / 'sbatch', f'#!/bin/bash\n[[ -d {logs} ]] && echo "Submitted batch job 18"\n')
  res = _cli(f'--code_dir={tmp_path}', '--config=c.py', f'--workdir={tmp_path}/w', f'--sbatch={sbatch}',
             f'--script={tmp_path}/job.sbatch')
  assert res.returncode == 0 and 'Submitted batch job 18' in res.stdout, res.stderr
  assert f'#SBATCH --output={logs}/%x-%j.out' in (tmp_path / 'job.sbatch').read_text()


def _sbatch_arguments(line: str) -> list[str]:
  """The arguments sbatch reads from one `#SBATCH` line, as its parser does (SLURM src/sbatch/opt.c,
  `_get_argument`): split at unquoted whitespace; `"` toggles quoting; `\\` escapes the next character; an
  unquoted `#` ends the line (a comment)."""
  args, current, quoted, escaped, started = [], [], False, False, False
  for ch in line[len('#SBATCH'):]:
    if escaped:
      current.append(ch)
      escaped = False
    elif ch == '\\':
      escaped, started = True, True
    elif ch == '"':
      quoted, started = not quoted, True
    elif ch == '#' and not quoted:
      break
    elif ch.isspace() and not quoted:
      if started:
        args.append(''.join(current))
      current, started = [], False
    else:
      current.append(ch)
      started = True
  return args + ([''.join(current)] if started else [])


@pytest.mark.parametrize('workdir', ['/shared/my runs/run 1', '/shared/run#2', '/shared/a"b\\c'])
def test_a_log_path_with_spaces_hashes_or_quotes_reaches_sbatch_whole(workdir):
  """A workdir with a space gave `#SBATCH --output=/shared/my runs/...`, which sbatch splits (field case)."""
  script = slurm.render_script(**{**BASE, 'workdir': workdir})
  (line,) = [l for l in script.splitlines() if l.startswith('#SBATCH --output=')]
  assert _sbatch_arguments(line) == [f'--output={workdir}/slurm/%x-%j.out']
  assert subprocess.run(['bash', '-n'], input=script, text=True).returncode == 0


def test_a_remote_workdir_logs_to_the_shared_checkout_and_job_log_dir_overrides(tmp_path):
  """SLURM writes logs only to a filesystem: a gs:// workdir put `#SBATCH --output=gs://...` in the script
  (field case) and would have created a local folder named 'gs:'."""
  script = slurm.render_script(**{**BASE, 'workdir': 'gs://bucket/run'})
  assert '#SBATCH --output=/shared/overfeat/slurm_logs/%x-%j.out' in script.splitlines()
  assert '--workdir=gs://bucket/run' in script.splitlines()[-1]
  (tmp_path / 'c.py').write_text('')
  sbatch = _executable(tmp_path / 'sbatch', '#!/bin/bash\necho "Submitted batch job 19 ($1)"\n')
  res = _cli(f'--code_dir={tmp_path}', '--config=c.py', '--workdir=gs://bucket/run', f'--sbatch={sbatch}',
             cwd=tmp_path)
  assert res.returncode == 0, res.stderr
  assert f'Submitted batch job 19 ({tmp_path}/slurm_logs/overfeat.sbatch)' in res.stdout
  assert not (tmp_path / 'gs:').exists()
  res = _cli(f'--code_dir={tmp_path}', '--config=c.py', '--workdir=gs://bucket/run',
             f'--job_log_dir={tmp_path}/l', '--dry_run')
  assert f'#SBATCH --output={tmp_path}/l/%x-%j.out' in res.stdout.splitlines(), res.stderr
  res = _cli(f'--code_dir={tmp_path}', '--config=c.py', '--workdir=/w', '--job_log_dir=gs://bucket/logs',
             '--dry_run')
  assert res.returncode == 2 and 'SLURM writes job logs only to a filesystem' in res.stderr, res.stderr


@pytest.mark.multiprocess
@pytest.mark.parametrize('nodes, process_per, local_ids', [(2, 'node', 'None'), (1, 'gpu', '({i},)')])
def test_rendered_script_runs_real_processes_from_slurm_variables(tmp_path, nodes, process_per, local_ids):
  """The script, run by bash with a local fake srun: distributed.initialize finds its peers from SLURM_*."""
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  _executable(bin_dir / 'srun', FAKE_SRUN)
  port = common.free_port()
  script = slurm.render_script(nodes=nodes, gpus_per_node=2 // nodes, process_per=process_per,
                               time_limit='0:10:00', job_name='t', code_dir=str(REPO_ROOT),
                               config='unused.py',
                               workdir=str(tmp_path), venv=str(REPO_ROOT / '.venv'), coordinator_port=port,
                               module='tests.launch._allreduce_worker')
  env = {**os.environ, 'PATH': f'{bin_dir}:{os.environ["PATH"]}', 'SRUN_LOG_DIR': str(tmp_path),
         'SLURM_JOB_ID': '5', 'SLURM_JOB_NODELIST': 'localhost,node[2]', 'SLURM_NTASKS': '2',
         'SLURM_JOB_NUM_NODES': str(nodes), 'JAX_PLATFORMS': 'cpu',
         'XLA_FLAGS': xla_flags.xla_flags(2)}
  try:  # two jax imports and a rendezvous: seconds when quiet, minutes beside the suite's other worker
    res = subprocess.run(['bash', '-c', script], env=env, capture_output=True, text=True, timeout=300)
  except subprocess.TimeoutExpired:
    pytest.fail('no result in 300 s; task logs:\n' + '\n'.join(
        p.read_text()[-2000:] for p in sorted(tmp_path.glob('task*.log'))))
  logs = [(tmp_path / f'task{i}.log').read_text() for i in range(2)]
  assert res.returncode == 0, res.stderr + '\n'.join(logs)
  for i in range(2):
    assert f'allreduce ok: process {i} of 2, 4 devices, sum 36 == 36' in logs[i]
    assert ("Starting jax.distributed from slurm: ClusterSpec(source='slurm', "
            f"coordinator_address='localhost:{port}', num_processes=2, process_id={i}, "
            f"local_device_ids={local_ids.format(i=i)}") in logs[i]


def test_script_refuses_to_run_outside_slurm(tmp_path):
  script = slurm.render_script(**BASE)
  env = {k: v for k, v in os.environ.items() if not k.startswith('SLURM_')}
  res = subprocess.run(['bash', '-c', script], env=env, capture_output=True, text=True, timeout=30)
  assert res.returncode != 0 and 'submit this script with sbatch' in res.stderr
