#!/usr/bin/env bash
# The GPU check: on a machine with one NVIDIA GPU and a CUDA jaxlib
# (pip install -U "jax[cuda12]"; a CUDA torch for the PyTorch rows), in under
# five minutes: the GPU test, the CLI's course and default recipes, the bf16
# policy and the peer benchmark's jaxnet and PyTorch rows at batch 64, 1024
# and 8192, into one JSON (its path is printed; default
# benchmarks/results/gpu_check-<UTC time>.json). Without a GPU: one line,
# "no GPU: ...", and exit status 1. Not part of CI.
#
# Usage: bash benchmarks/gpu_check.sh [out.json]      (PYTHON=... picks the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "no GPU: cannot tell, '$PYTHON' is not on PATH (activate the environment or set PYTHON)" >&2
    exit 1
fi
exec timeout 600 "$PYTHON" benchmarks/gpu_check.py "$@"
