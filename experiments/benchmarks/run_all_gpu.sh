#!/usr/bin/env bash
# The GPU figures of BENCHMARKS.md on one H100/H200, in under 10 minutes of device time (each step has a time cap):
#   1. train steps, fast and accurate, bf16: batch 256, then doubling to the largest that fits; MFU against the
#      989.4 TFLOP/s datasheet peak and the 796 TFLOP/s measured matmul peak;
#   2. dense six scales + flips + offset pooling (fast and accurate, bf16);
#   3. training fed by the real pipeline (JPEGs stored at 341x256 -> grain workers -> device): data wait with
#      0 workers and with the trainer's 'auto' count (the host's cores less 2).
# EXTRA=1 adds the longer ones (FLOP accounting, HLO report, box merge, input per core, 500x375 JPEGs, bf16 vs
# f32 curves: ~15 more minutes).
#
#   bash experiments/benchmarks/run_all_gpu.sh                   # from the repository root
#   OUT=$OUT/bench bash experiments/benchmarks/run_all_gpu.sh   # logs where the device tool returns them
#   DRY_RUN=1 bash experiments/benchmarks/run_all_gpu.sh        # print the commands only (all of them)
#
# On the lent GPU machine (python3 has jax, flax, optax, orbax but not grain/tfds/ml_collections/simplejpeg),
# first fetch their wheels here with experiments/benchmarks/gpu_wheels.sh and carry `.whl`: this script installs
# them into /tmp/site when `.whl` exists. Writes one log per benchmark and all.log (environment first) to $OUT,
# keeps going when one fails, exits 1 at the end if any did.
set -uo pipefail

if [[ -x .venv/bin/python ]]; then PY=${PY:-.venv/bin/python}; else PY=${PY:-python3}; fi
OUT=${OUT:-/tmp/overfeat_gpu_bench_$(date +%Y%m%d_%H%M%S)}
DRY_RUN=${DRY_RUN:-0}
EXTRA=${EXTRA:-$DRY_RUN}
B=experiments/benchmarks
failed=()

if [[ ! -f "$B/dense_inference.py" ]]; then
  echo "run from the repository root (no $B/dense_inference.py here)" >&2
  exit 2
fi
if [[ "$DRY_RUN" == 1 ]]; then
  run() { shift 2; echo "$PY $*"; }
  OUT=$(mktemp -d)
elif [[ -d .whl ]]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
fi
mkdir -p "$OUT"
LOG="$OUT/all.log"

[[ "$DRY_RUN" == 1 ]] || {
  echo "date: $(date -Iseconds)"; echo "git: $(git rev-parse --short HEAD 2>/dev/null)"; echo "cores: $(nproc)"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 || true
  lscpu | grep -E 'Model name|^CPU\(s\)|Thread' || true
  "$PY" -c 'import jax, jaxlib, flax, optax, grain, simplejpeg; print("jax", jax.__version__, "jaxlib",
jaxlib.__version__, "flax", flax.__version__, "optax", optax.__version__, "simplejpeg", simplejpeg.__version__)
print(jax.devices())'
} 2>&1 | tee "$LOG"

[[ "$DRY_RUN" == 1 ]] || run() {  # run NAME SECONDS SCRIPT FLAGS...: one benchmark, capped, to $OUT/NAME.log
  local name=$1 cap=$2; shift 2
  echo -e "\n===== $name (cap ${cap} s): $PY $* =====" | tee -a "$LOG"
  local t0=$SECONDS
  if PYTHONUNBUFFERED=1 timeout "$cap" "$PY" "$@" 2>"$OUT/$name.stderr" | tee "$OUT/$name.log" | tee -a "$LOG"; then
    echo "===== $name: ok in $((SECONDS - t0)) s" | tee -a "$LOG"
  else
    echo "===== $name: FAILED or capped after $((SECONDS - t0)) s (see $OUT/$name.stderr)" | tee -a "$LOG"
    tail -5 "$OUT/$name.stderr" | tee -a "$LOG"
    failed+=("$name")
  fi
}

# 1. Train steps (synthetic data on the device): batch 256 and doubling until out of memory.
run train_step_fast 130 $B/train_step.py --nets=fast --dtype=bfloat16 --batch=256,1024,2048,4096 --steps=10
run train_step_accurate 130 $B/train_step.py --nets=accurate --dtype=bfloat16 --batch=256,1024,2048 --steps=10
# 2. Dense six scales + flips + offsets, bf16 (fast: both offset batchings; accurate: vmap).
run dense_fast 90 $B/dense_inference.py --geometry=fast --dtypes=bfloat16 --variants=vmap,fold --batch=64 \
    --steps=5
run dense_accurate 70 $B/dense_inference.py --geometry=accurate --dtypes=bfloat16 --variants=vmap --batch=32 \
    --steps=5
# 3. Training fed by the real pipeline from JPEGs stored as resized256 (341x256), in process and 'auto' workers.
run train_pipeline_fast 140 $B/train_from_pipeline.py --geometry=fast --batch=256 --steps=30 --worker_counts=0,auto \
    --num_images=2048 --image_size=341x256 --workdir=/tmp/overfeat_pipeline_bench

if [[ "$EXTRA" == 1 ]]; then
  run flops 300 $B/flop_accounting.py --batch=256
  run hlo 300 $B/hlo_report.py --programs=train_float32,train_bfloat16,dense_vmap,dense_fold,dense_gather \
      --geometry=fast --train_batch=256 --batch=32 --out_dir="$OUT/hlo"
  run dense_fast_max 300 $B/dense_inference.py --geometry=fast --dtypes=bfloat16,float32 --variants=vmap,gather \
      --batch=64 --steps=5 --find_max_batch --localize --localize_batch=16 --top_k=1
  run box_merge 200 $B/box_merge.py --sizes=500,2000,5000 --reference_budget_s=20
  run input_pipeline 300 $B/input_pipeline.py --num_images=300 --seconds=3 --worker_counts=1,2,4,8
  run train_pipeline_fast_500x375 300 $B/train_from_pipeline.py --geometry=fast --batch=256 --steps=30 \
      --worker_counts=auto --num_images=4096 --workdir=/tmp/overfeat_pipeline_bench
  run bf16_vs_f32 400 $B/bf16_vs_f32.py --steps=600 --data_dir=/tmp/overfeat_tfds --out="$OUT/bf16_vs_f32.png"
fi

if ((${#failed[@]})); then
  echo "FAILED: ${failed[*]} (logs in $OUT)" | tee -a "$LOG"
  exit 1
fi
[[ "$DRY_RUN" == 1 ]] && rm -r "$OUT" && exit 0
echo "all benchmarks ran; logs in $OUT" | tee -a "$LOG"
