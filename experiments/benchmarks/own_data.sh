#!/bin/bash
# The own-data recipe measured on the embedded det data written out as files (docs/own_data.md): write the VOC
# folder and the COCO file, build both back, then the same classifier and localizer followed by the recipe's
# detection stage on (A) the VOC folder and (B) the embedded det view, each timed (wall, user, sys CPU).
#   bash experiments/benchmarks/own_data.sh OUT [EXTRA --config.FIELD=... overrides for both runs]
# Results: experiments/benchmarks/results/own_data.md.
set -euo pipefail
OUT=${1:?usage: own_data.sh OUT [overrides]}; shift
cd "$(dirname "$0")/../.."
P=${PYTHON:-python}
t() { /usr/bin/time -f "$1: %e s wall, %U s user, %S s sys" "${@:2}"; }
O=(--config.data.data_dir="$OUT/tfds" "$@")
date -u; uptime
t write "$P" -m overfeat_jax.write_folders --out="$OUT/folders"
t build_voc "$P" -m overfeat_jax.build_dataset --dataset=voc_folder --manual_dir="$OUT/folders/voc" \
    --name=embedded_det --classes="$OUT/folders/voc/classes.txt" --smaller_side=0 --data_dir="$OUT/tfds"
t build_coco "$P" -m overfeat_jax.build_dataset --dataset=coco_json --manual_dir="$OUT/folders/coco" \
    --name=embedded_det --smaller_side=0 --data_dir="$OUT/tfds"
t main_voc "$P" -m overfeat_jax.main --config=experiments/configs/own_data.py "${O[@]}" --workdir="$OUT/work_voc"
mkdir -p "$OUT/work_emb" && cp -r "$OUT/work_voc/classification" "$OUT/work_voc/localization" "$OUT/work_emb/"
t main_emb "$P" -m overfeat_jax.main --config=experiments/configs/embedded.py "${O[@]}" --workdir="$OUT/work_emb"
date -u; uptime
