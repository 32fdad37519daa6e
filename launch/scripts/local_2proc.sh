#!/bin/bash
# The multi-host code path on one CPU machine: 2 processes x 2 fake devices. Extra flags go to the trainer:
#   CONFIG=experiments/configs/fast_imagenet.py:smoke WORKDIR=/tmp/of_2proc launch/scripts/local_2proc.sh
set -euo pipefail
: "${CONFIG:?set CONFIG}" "${WORKDIR:?set WORKDIR}"
cd "$(dirname "$0")/../.."
exec python -m launch.local --num_processes="${NUM_PROCESSES:-2}" --devices_per_process="${DEVICES:-2}" \
  --module="${MODULE:-overfeat_jax.main}" \
  --timeout_s="${TIMEOUT_S:-3600}" -- --config="$CONFIG" --workdir="$WORKDIR" "$@"
