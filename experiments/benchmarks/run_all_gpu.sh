#!/usr/bin/env bash
# Every speed benchmark of issue "Speed on accelerators", on one GPU, with the flags the results need.
#
#   bash experiments/benchmarks/run_all_gpu.sh                    # from the repository root; ~15-25 min on an H100
#   PY=python OUT=/tmp/gpu_bench QUICK=1 bash experiments/benchmarks/run_all_gpu.sh   # fewer steps (~8 min)
#   DRY_RUN=1 bash experiments/benchmarks/run_all_gpu.sh      # print the commands only
#
# Writes one log per benchmark and all.log (environment first) to $OUT, keeps going when one benchmark fails,
# and exits 1 at the end if any did. Copy the tables into experiments/benchmarks/results/speed.md.
set -uo pipefail

PY=${PY:-.venv/bin/python}
OUT=${OUT:-/tmp/overfeat_gpu_bench_$(date +%Y%m%d_%H%M%S)}
QUICK=${QUICK:-0}
DRY_RUN=${DRY_RUN:-0}
B=experiments/benchmarks
failed=()

if [[ ! -f "$B/dense_inference.py" ]]; then
  echo "run from the repository root (no $B/dense_inference.py here)" >&2
  exit 2
fi
if [[ "$QUICK" == 1 ]]; then STEPS=4; TRAIN_STEPS=20; CURVE_STEPS=200; else STEPS=10; TRAIN_STEPS=50; CURVE_STEPS=600; fi

if [[ "$DRY_RUN" == 1 ]]; then
  run() { shift; echo "$PY $*"; }
  OUT=$(mktemp -d)
fi
mkdir -p "$OUT"
LOG="$OUT/all.log"

[[ "$DRY_RUN" == 1 ]] || {
  echo "date: $(date -Iseconds)"; echo "git: $(git rev-parse --short HEAD 2>/dev/null)"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 || true
  lscpu | head -20
  "$PY" -c 'import jax, jaxlib, flax, optax; print("jax", jax.__version__, "jaxlib", jaxlib.__version__,
"flax", flax.__version__, "optax", optax.__version__); print(jax.devices())'
} 2>&1 | tee "$LOG"

[[ "$DRY_RUN" == 1 ]] || run() {  # run NAME SCRIPT FLAGS...: one benchmark, its output to $OUT/NAME.log and all.log
  local name=$1; shift
  echo -e "\n===== $name: $PY $* =====" | tee -a "$LOG"
  local t0=$SECONDS
  if "$PY" "$@" 2>"$OUT/$name.stderr" | tee "$OUT/$name.log" | tee -a "$LOG"; then
    echo "===== $name: ok in $((SECONDS - t0)) s" | tee -a "$LOG"
  else
    echo "===== $name: FAILED after $((SECONDS - t0)) s (see $OUT/$name.stderr)" | tee -a "$LOG"
    tail -5 "$OUT/$name.stderr" | tee -a "$LOG"
    failed+=("$name")
  fi
}

# 1. FLOPs per layer, XLA's count of the compiled step, ceilings.
run flops $B/flop_accounting.py --batch=256
# 2. The train step with synthetic data (the trainer's benchmark), if it is there.
if [[ -f $B/train_step.py ]]; then run train_step $B/train_step.py; fi
# 3. What XLA compiled: layouts, dtypes, copies, collectives, host transfers (texts kept in $OUT/hlo).
run hlo $B/hlo_report.py --programs=train_float32,train_bfloat16,dense_vmap,dense_fold,dense_gather \
    --geometry=fast --train_batch=256 --batch=32 --out_dir="$OUT/hlo"
# 4. Dense six-scale + flips + offsets, fast: both offset batchings, bf16 and f32, largest batch, localization.
run dense_fast $B/dense_inference.py --geometry=fast --dtypes=bfloat16,float32 --variants=vmap,fold,gather \
    --batch=64 --steps=$STEPS --find_max_batch --localize --localize_batch=16 --top_k=1
run dense_accurate $B/dense_inference.py --geometry=accurate --dtypes=bfloat16 --variants=vmap,fold \
    --batch=32 --steps=$STEPS
# 5. Box merge alone (jit vs reference) at the sizes dense localization produces.
run box_merge $B/box_merge.py --sizes=500,2000,5000 --reference_budget_s=20
# 6. Host input per core, then training fed by the real pipeline (JPEGs -> grain workers -> device).
run input_pipeline $B/input_pipeline.py --num_images=300 --seconds=3
NPROC=$(nproc)
run train_pipeline_fast $B/train_from_pipeline.py --geometry=fast --batch=256 --steps=$TRAIN_STEPS \
    --worker_count=$((NPROC > 2 ? NPROC - 2 : 1)) --num_images=4096 --workdir=/tmp/overfeat_pipeline_bench
run train_pipeline_fast_stored256 $B/train_from_pipeline.py --geometry=fast --batch=256 --steps=$TRAIN_STEPS \
    --worker_count=$((NPROC > 2 ? NPROC - 2 : 1)) --num_images=4096 --image_size=341x256 \
    --workdir=/tmp/overfeat_pipeline_bench
# 7. bf16 vs f32 loss curves on the embedded demo (same seed, same batches).
run bf16_vs_f32 $B/bf16_vs_f32.py --steps=$CURVE_STEPS --data_dir=/tmp/overfeat_tfds \
    --out="$OUT/bf16_vs_f32.png"

if ((${#failed[@]})); then
  echo "FAILED: ${failed[*]} (logs in $OUT)" | tee -a "$LOG"
  exit 1
fi
[[ "$DRY_RUN" == 1 ]] && rm -r "$OUT" && exit 0
echo "all benchmarks ran; logs in $OUT" | tee -a "$LOG"
