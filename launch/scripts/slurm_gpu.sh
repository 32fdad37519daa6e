#!/bin/bash
# Fast OverFeat on NODES nodes x 8 GPUs, one process per node. Extra flags go to launch.slurm, e.g.
#   PARTITION=gpu NODES=4 WORKDIR=/shared/runs/fast launch/scripts/slurm_gpu.sh --config.batch_size=1024
set -euo pipefail
: "${PARTITION:?set PARTITION}" "${NODES:?set NODES}" "${WORKDIR:?set WORKDIR (a shared filesystem path)}"
CONFIG="${CONFIG:-experiments/configs/fast_imagenet.py}"
cd "$(dirname "$0")/../.."
VENV="${VENV:-$PWD/.venv}"
exec python -m launch.slurm \
  --nodes="$NODES" --gpus_per_node="${GPUS_PER_NODE:-8}" --process_per=node --time="${TIME:-24:00:00}" \
  --partition="$PARTITION" --venv="$VENV" --code_dir="$PWD" --config="$CONFIG" --workdir="$WORKDIR" "$@"
