#!/usr/bin/env bash
# One GPU, one prepared run (< 8 min with installs): scoring throughput of the full-size Stable Audio Open
# DiT with random weights, exhaustive and prefiltered, bf16 and fp32 (bench/gpu_check.py).
#
#   bench/gpu_wheels.sh                 # here, once: pure-Python wheels the GPU image lacks -> bench/wheels/
#   bench/gpu_check.sh [--compile]      # there (carry bench/wheels); --small smoke-runs it on CPU
#
# The GPU image has torch + torchaudio but not stable-audio-tools, its light dependencies, pluggy or faiss;
# they are installed from the carried wheels with --no-deps into a venv that sees the image's packages.
# Results: bench/results/gpu_check.{json,md} (copied to $OUT when set, as the device runner expects).
set -euo pipefail
cd "$(dirname "$0")/.."
wheels=${TDA_WHEELS:-bench/wheels}
venv=${TDA_GPU_VENV:-/tmp/tda-gpu-venv}
if ! python -c "import stable_audio_tools, pluggy, faiss" 2>/dev/null; then
  python -m venv --system-site-packages "$venv"
  # shellcheck disable=SC1091
  . "$venv/bin/activate"
  if compgen -G "$wheels/*.whl" >/dev/null; then
    python -m pip install --quiet --no-index --no-deps "$wheels"/*.whl
  fi
fi
# the package maps tda_plugin.adapters -> adapters/ and tda_plugin.cli -> cli/; lay it out without installing
pkg=$(mktemp -d)
cp -r tda_plugin "$pkg/tda_plugin"
cp -r adapters "$pkg/tda_plugin/adapters"
cp -r cli "$pkg/tda_plugin/cli"
PYTHONPATH="$pkg" TDA_NO_PROGRESS=1 HF_HUB_OFFLINE=1 python bench/gpu_check.py "$@"
if [ -n "${OUT:-}" ]; then cp bench/results/gpu_check.json bench/results/gpu_check.md "$OUT/"; fi
