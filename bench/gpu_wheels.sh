#!/usr/bin/env bash
# Download (no install) the wheels bench/gpu_check.sh installs on a GPU machine without internet:
# stable-audio-tools' light model stack (requirements/toolkits.txt), pluggy, safetensors and faiss-cpu, at the
# versions requirements/constraints.txt pins, for CPython 3.11 manylinux x86_64. Into bench/wheels/ (ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs="stable-audio-tools k-diffusion alias-free-torch einops einops-exts torchdiffeq torchsde trampoline pluggy
      safetensors faiss-cpu soundfile"
pins=()
for p in $pkgs; do
  pin=$(grep -i "^$p==" requirements/constraints.txt || true)
  pins+=("${pin:-$p}")
done
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 --platform manylinux2014_x86_64 \
  --platform manylinux_2_28_x86_64 --platform any -d bench/wheels "${pins[@]}"
du -sh bench/wheels
