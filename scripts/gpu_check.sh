#!/usr/bin/env bash
# Short paper-size training and evaluation on this machine's GPU: throughput (samples/s,
# users/s) and peak memory (torch.cuda.max_memory_allocated).
#   scripts/gpu_check.sh                              # synthetic data at the paper preset's size
#   scripts/gpu_check.sh --dataset letter:DIR          # e.g. Instruments, with its official codes
#   scripts/gpu_check.sh --device cpu --tiny           # a small version for a CPU (smoke test)
# Extra options: --steps N, --users N, --json FILE (python -m bench.gpu_check --help).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
exec "$PYTHON" -m bench.gpu_check "$@"
