r"""Writes (and submits) an sbatch script that trains on a SLURM GPU cluster.

The script stays short because `overfeat_jax.parallel.distributed.initialize` reads the SLURM variables
itself: process id/count from `SLURM_PROCID`/`SLURM_NTASKS`, the coordinator from the first host of the
nodelist, and, with one process per GPU, the GPU from `SLURM_LOCALID`.

CPUs: each task asks for `--cpus_per_gpu` (default 10) CPUs per GPU it drives, in `#SBATCH` and again on srun
(SLURM 22.05+ no longer passes sbatch's --cpus-per-task to srun). Without it many clusters give a
one-task-per-node job a single CPU, and `data.worker_count='auto'` (the cores the process may use, less 2)
then starts no input workers: at ~1,000-1,500 images per CPU-second, 16,000 img/s needs 11-16 cores
(docs/data_pipeline.md). Set it to your node's CPUs / GPUs, or pass --cpus_per_task, or --exclusive.

  python -m launch.slurm --nodes=4 --gpus_per_node=8 --time=24:00:00 --partition=gpu \
      --venv=$PWD/.venv --config=experiments/configs/fast_imagenet.py --workdir=/shared/runs/fast \
      --config.batch_size=1024 --dry_run
"""

import os
import re
import shlex
import subprocess
import sys
from typing import Sequence

from absl import flags

from launch import common
from overfeat_jax import storage
from overfeat_jax.errors import InputError
FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Only the command line defines flags, so that tests can import several launchers."""
  flags.DEFINE_integer('nodes', 1, 'Number of nodes.')
  flags.DEFINE_integer('gpus_per_node', 8, 'GPUs on each node.')
  flags.DEFINE_enum('process_per', 'node', ['node', 'gpu'],
                    'node: one process per node owning all its GPUs; gpu: one process per GPU.')
  flags.DEFINE_integer('cpus_per_task', None, 'CPUs per task (input pipeline); default cpus_per_gpu x GPUs '
                       'per task.')
  flags.DEFINE_integer('cpus_per_gpu', 10, 'CPUs per GPU when --cpus_per_task is unset (0: ask for none).')
  flags.DEFINE_bool('exclusive', False, 'Ask for whole nodes (#SBATCH --exclusive).')
  flags.DEFINE_string('time', '24:00:00', 'Wall-clock limit, [D-]HH:MM:SS.')
  flags.DEFINE_string('partition', None, 'SLURM partition.')
  flags.DEFINE_string('account', None, 'SLURM account to charge.')
  flags.DEFINE_string('job_name', 'overfeat', 'Job name (also names the script and log).')
  flags.DEFINE_string('venv', None, 'Virtual environment to activate on the nodes (its directory).')
  flags.DEFINE_string('container_image', None, 'Run inside this image with pyxis (srun --container-image).')
  flags.DEFINE_multi_string('setup', [], 'Extra shell lines before srun, e.g. "module load cuda/12".')
  flags.DEFINE_string('code_dir', os.getcwd(), 'Repository checkout on the shared filesystem.')
  flags.DEFINE_integer('coordinator_port', None, 'Coordinator port; default derived from the job id.')
  flags.DEFINE_string('module', common.TRAINER_MODULE, 'Module srun runs.')
  flags.DEFINE_string('config', None, 'Experiment config file (relative to --code_dir), [:ARG].')
  flags.DEFINE_string('workdir', None, 'Output directory on the shared filesystem.')
  flags.DEFINE_string('job_log_dir', None, 'Folder of the job logs (#SBATCH --output), on a filesystem the '
                      'nodes write; default WORKDIR/slurm, or CODE_DIR/slurm_logs for a remote (gs://, s3://) '
                      'workdir.')
  flags.DEFINE_string('script', None, 'Where to write the script; default JOB_LOG_DIR/JOB_NAME.sbatch.')
  flags.DEFINE_string('sbatch', 'sbatch', 'The sbatch command.')
  flags.DEFINE_bool('dry_run', False, 'Print the script, write and submit nothing.')


_TIME_RE = re.compile(r'^(\d+-)?\d{1,2}:\d{2}:\d{2}$')
_NAME_RE = re.compile(r'^[A-Za-z0-9_.-]+$')


def _check(nodes: int, gpus_per_node: int, time_limit: str, job_name: str, port: int | None) -> None:
  if nodes < 1 or gpus_per_node < 1:
    raise InputError(f'--nodes and --gpus_per_node must be at least 1, got {nodes} and {gpus_per_node}')
  if not _TIME_RE.match(time_limit):
    raise InputError(f'--time={time_limit!r} is not [D-]HH:MM:SS')
  if not _NAME_RE.match(job_name):
    raise InputError(f'--job_name={job_name!r} may only use letters, digits, _ . -')
  if port is not None and not 0 < port < 65536:
    raise InputError(f'--coordinator_port={port} is not a TCP port')


def sbatch_value(value: str) -> str:
  """`value` as one argument of an `#SBATCH` line: sbatch splits those lines at whitespace, reads an unquoted
  `#` as the start of a comment, and takes double quotes and backslash escapes as a shell would (SLURM's
  `sbatch/opt.c`); so a value with any of these is double-quoted, its `\\` and `"` escaped."""
  if not re.search(r'[\s#"\\]', value):
    return value
  return '"' + value.replace('\\', '\\\\').replace('"', '\\"') + '"'


def _header(nodes, gpus_per_node, tasks_per_node, time_limit, job_name, log, partition, account, cpus,
            exclusive):
  lines = ['#!/bin/bash', f'#SBATCH --job-name={job_name}', f'#SBATCH --nodes={nodes}',
           f'#SBATCH --ntasks-per-node={tasks_per_node}', f'#SBATCH --gpus-per-node={gpus_per_node}',
           f'#SBATCH --time={time_limit}', f'#SBATCH --output={sbatch_value(log)}']
  lines += [f'#SBATCH --{k}={sbatch_value(str(v))}' for k, v in
            (('partition', partition), ('account', account), ('cpus-per-task', cpus)) if v is not None]
  return lines + ['#SBATCH --exclusive'] * exclusive


def cpus_for_task(cpus_per_task: int | None, cpus_per_gpu: int, gpus_per_task: int) -> int | None:
  """CPUs each task asks for: `cpus_per_task` when given, else `cpus_per_gpu * gpus_per_task` (None: 0)."""
  if cpus_per_task is not None:
    if cpus_per_task < 1:
      raise InputError(f'--cpus_per_task must be at least 1, got {cpus_per_task}')
    return cpus_per_task
  if cpus_per_gpu < 0:
    raise InputError(f'--cpus_per_gpu must be at least 0, got {cpus_per_gpu}')
  return cpus_per_gpu * gpus_per_task or None


def render_script(*, nodes: int, gpus_per_node: int, process_per: str, time_limit: str, job_name: str,
                  code_dir: str, config: str, workdir: str, overrides: Sequence[str] = (),
                  partition: str | None = None, account: str | None = None, cpus_per_task: int | None = None,
                  cpus_per_gpu: int = 10, exclusive: bool = False,
                  venv: str | None = None, container_image: str | None = None, setup: Sequence[str] = (),
                  coordinator_port: int | None = None, module: str = common.TRAINER_MODULE,
                  logs: str | None = None) -> str:
  """The sbatch script: resources, a guard that it runs under SLURM, environment, then one srun; the job's log
  goes to `logs` (default `log_dir(workdir, code_dir)`)."""
  _check(nodes, gpus_per_node, time_limit, job_name, coordinator_port)
  if not config or not workdir:
    raise InputError('--config and --workdir are required')
  tasks = 1 if process_per == 'node' else gpus_per_node
  log = os.path.join(logs or log_dir(workdir, code_dir), '%x-%j.out')
  cpus = cpus_for_task(cpus_per_task, cpus_per_gpu, gpus_per_node // tasks)
  lines = _header(nodes, gpus_per_node, tasks, time_limit, job_name, log, partition, account, cpus, exclusive)
  lines += ['set -euo pipefail', ': "${SLURM_JOB_NODELIST:?submit this script with sbatch}"',
            f'# {nodes * tasks} processes ({tasks} per node, each with {gpus_per_node // tasks} GPU(s)); '
            'overfeat_jax.parallel.distributed reads SLURM_* itself.',
            f'cd {shlex.quote(code_dir)}', *setup]
  if venv:
    lines.append(f'source {shlex.quote(os.path.join(venv, "bin", "activate"))}')
  if coordinator_port is not None:
    lines.append(f'export OVERFEAT_COORDINATOR_PORT={coordinator_port}')
  srun = ['srun', '--kill-on-bad-exit=1']  # one dead process ends the step, not a hang until the timeout
  srun += [f'--cpus-per-task={cpus}'] * (cpus is not None)  # srun (22.05+) does not inherit sbatch's
  if container_image:
    srun += [f'--container-image={container_image}', f'--container-mounts={code_dir}:{code_dir}',
             f'--container-workdir={code_dir}']
  lines.append(shlex.join(srun + common.trainer_command('python', config, workdir, overrides, module)))
  return '\n'.join(lines) + '\n'


def log_dir(workdir: str, code_dir: str) -> str:
  """Where the job's log goes by default (`#SBATCH --output=LOG_DIR/%x-%j.out`): WORKDIR/slurm, or, for a
  remote workdir (gs://, s3://: SLURM writes logs only to a filesystem), CODE_DIR/slurm_logs, the checkout on
  the shared filesystem."""
  if storage.is_remote(workdir):
    return os.path.join(code_dir, 'slurm_logs')
  return os.path.join(workdir, 'slurm')


def submit(script: str, path: str, sbatch: str = 'sbatch', logs: str | None = None) -> None:
  """Writes the script, creates the log folder `logs` (SLURM does not: a job whose --output folder is missing
  fails without a log) and hands the script to sbatch (whose 'Submitted batch job N' line is printed)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  if logs:
    os.makedirs(logs, exist_ok=True)
  with open(path, 'w') as f:
    f.write(script)
  print(f'wrote {path}', flush=True)
  common.run_checked([sbatch, path], 'sbatch')


def main(argv: list[str], overrides: list[str]) -> None:
  if len(argv) > 1:
    raise InputError(f'unexpected arguments {argv[1:]}; put trainer flags after --')
  logs = FLAGS.job_log_dir or log_dir(FLAGS.workdir or '', FLAGS.code_dir)
  if storage.is_remote(logs):
    raise InputError(f'--job_log_dir={logs}: SLURM writes job logs only to a filesystem the nodes mount')
  if os.path.isdir(FLAGS.code_dir):
    common.check_config(FLAGS.config, FLAGS.code_dir)
  elif not FLAGS.config:
    common.check_config(FLAGS.config)
  script = render_script(
      nodes=FLAGS.nodes, gpus_per_node=FLAGS.gpus_per_node, process_per=FLAGS.process_per,
      time_limit=FLAGS.time, job_name=FLAGS.job_name, code_dir=FLAGS.code_dir, config=FLAGS.config,
      workdir=FLAGS.workdir, overrides=overrides, partition=FLAGS.partition, account=FLAGS.account,
      cpus_per_task=FLAGS.cpus_per_task, cpus_per_gpu=FLAGS.cpus_per_gpu, exclusive=FLAGS.exclusive,
      venv=FLAGS.venv, container_image=FLAGS.container_image, setup=FLAGS.setup,
      coordinator_port=FLAGS.coordinator_port, module=FLAGS.module, logs=logs)
  if FLAGS.dry_run:
    sys.stdout.write(script)
    return
  submit(script, FLAGS.script or os.path.join(logs, f'{FLAGS.job_name}.sbatch'), FLAGS.sbatch, logs=logs)


if __name__ == '__main__':
  _define_flags()
  common.main_with_overrides(main)
