#!/bin/bash
# Fast OverFeat on a v5e-32 pod slice (8 hosts x 4 chips). Extra flags go to launch.tpu_pod, e.g.
#   TPU_NAME=of-v5e ZONE=us-west4-a PROJECT=my-proj BUCKET=gs://my-bucket launch/scripts/tpu_v5e_32.sh --dry_run
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}" "${PROJECT:?set PROJECT}" "${BUCKET:?set BUCKET (gs://...)}"
CONFIG="${CONFIG:-experiments/configs/fast_imagenet.py}"
RUN="${RUN:-fast_v5e32}"
cd "$(dirname "$0")/../.."
exec python -m launch.tpu_pod \
  --tpu_name="$TPU_NAME" --zone="$ZONE" --project="$PROJECT" \
  --accelerator_type=v5litepod-32 --topology=v5e:4x8 --runtime_version=v2-alpha-tpuv5-lite --create \
  --code_dir=. --config="$CONFIG" --workdir="$BUCKET/$RUN" "$@"
