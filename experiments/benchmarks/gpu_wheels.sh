#!/usr/bin/env bash
# Fetches, here, the wheels the lent GPU machine lacks (its python3 3.12 has jax, flax, optax, orbax, absl,
# etils, numpy, Pillow, protobuf, pyarrow, psutil, wrapt, requests, tqdm, pyyaml, but not the input stack),
# into .whl (ignored by git), for run_all_gpu.sh to install there into /tmp/site. Run from the repository root:
#   bash experiments/benchmarks/gpu_wheels.sh && du -sh .whl      # then carry ".whl" in the device call
set -euo pipefail
[[ -f experiments/benchmarks/run_all_gpu.sh ]] || { echo "run from the repository root" >&2; exit 2; }
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
PACKAGES=(grain==0.2.18 portpicker array-record==0.8.6 tensorflow-datasets==4.9.10 dm-tree immutabledict
          simple-parsing docstring-parser tensorflow-metadata googleapis-common-protos termcolor toml
          ml-collections==1.1.0 simplejpeg==1.9.0 tensorboardX importlib_resources)
PLATFORMS=()
for n in 17 24 27 28 31 34; do PLATFORMS+=(--platform "manylinux_2_${n}_x86_64"); done
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${PLATFORMS[@]}" --platform manylinux2014_x86_64 --platform any -d .whl "${PACKAGES[@]}"
python3 -m pip wheel -q --no-deps -w .whl promise==2.3   # pure Python, published as a source archive only
