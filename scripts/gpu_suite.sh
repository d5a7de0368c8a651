#!/usr/bin/env bash
# Every check that needs a GPU, in one go, for a short GPU lease (about 10 minutes):
#   1. scripts/gpu_check.sh: paper-size T5 training and beam search on synthetic data;
#   2. bench perf on Instruments (official codes): our constrained beam search against
#      transformers' generate, training steps, LETTER tokenizer epochs;
#   3. a causal-LM run with LoRA (tiny-llama, synthetic, quick preset), and which attention
#      kernels train it to finite losses under bf16 (scripts/causal_attention_probe.py);
#   4. an end-to-end `bench run` on MovieLens-100K with the cpu preset (id, tiger, letter,
#      text), to set beside the CPU reference run;
#   5. paper-size training samples/s with 1, 4 and 12 units sharing the card
#      (scripts/gpu_concurrency.sh: what --jobs gains);
#   6. scripts/reproduce_letter.sh: LETTER's Instruments codes and `id` at the paper preset,
#      every unit at once, and the table against the paper (paper_comparison.md);
#   7. scripts/reference_ml100k.sh with JOBS=${REF_JOBS:-14}: the ML-100K reference grid under
#      the protocol (every tokenizer's tuning trials, then seeds 0-2), 14 units at a time.
# ONLY="concurrency reproduce" runs just the steps named (gpu_check perf causal attention
# ml-100k concurrency reproduce reference).
# Each step has its own time limit, so a slow step costs only itself; finished run units are
# kept (runs are resumable). Usage:
#   scripts/gpu_suite.sh OUT_DIR [DATA_DIR]      # DATA_DIR holds ml-100k/ and letter/Instruments/
# Writes OUT_DIR/{log.txt,env.txt,gpu_check.json,perf.json,runs.tar.gz}.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: scripts/gpu_suite.sh OUT_DIR [DATA_DIR]}
DATA=${2:-../shared/data}
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
DEVICE=${DEVICE:-cuda}
RUNS=$(mktemp -d)
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

step() {  # step SECONDS NAME COMMAND...: run one check under a time limit, log its wall time
    local limit=$1 name=$2
    shift 2
    if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then return; fi
    echo "=== $name (limit ${limit}s)"
    local start=$SECONDS
    timeout "$limit" "$@"
    echo "=== $name: exit $?, ${SECONDS}s after start, took $((SECONDS - start))s"
}

{
    {
        date -u
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
        "$PYTHON" -c 'import torch, transformers, accelerate, peft; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__, "accelerate", accelerate.__version__, "peft", peft.__version__)'
        nproc
    } > "$OUT/env.txt" 2>&1
    cat "$OUT/env.txt"
    step 100 gpu_check "$PYTHON" -m bench.gpu_check --device "$DEVICE" --json "$OUT/gpu_check.json"
    step 150 perf "$PYTHON" -m bench.cli perf --device "$DEVICE" --dataset "letter:$DATA/letter/Instruments" \
        --json "$OUT/perf.json"
    step 60 causal "$PYTHON" -m bench.cli run --device "$DEVICE" --backbone causal:tiny-llama --lora \
        --tokenizers id,tiger --out "$RUNS/causal-lora"
    step 60 attention "$PYTHON" scripts/causal_attention_probe.py --device "$DEVICE"
    step 240 ml-100k "$PYTHON" -m bench.cli run --device "$DEVICE" --preset cpu --tokenizers id,tiger,letter,text \
        --dataset "ml-100k:$DATA/ml-100k" --out "$RUNS/ml-100k-cpu"
    step 150 concurrency scripts/gpu_concurrency.sh "$OUT/concurrency" 1 4 12
    step 480 reproduce env BENCH="$PYTHON -m bench.cli" DEVICE="$DEVICE" scripts/reproduce_letter.sh \
        "$DATA/letter/Instruments" "$RUNS/reproduce-letter"
    cp "$RUNS/reproduce-letter/paper_comparison.md" "$OUT/" 2>/dev/null
    step 540 reference env JOBS="${REF_JOBS:-14}" BENCH="$PYTHON -m bench.cli" scripts/reference_ml100k.sh \
        "$DATA/ml-100k" "$RUNS/reference-protocol" "$RUNS/tune-ml100k-cpu"
    tar -czf "$OUT/runs.tar.gz" -C "$RUNS" --exclude='*.pt' --exclude='rankings.csv' --exclude='per_user.csv' .
} 2>&1 | tr '\r' '\n' | grep --line-buffered -Ev '[0-9]+/[0-9]+ \[|^\s*$' | tee "$OUT/log.txt"  # without progress bars
