#!/usr/bin/env bash
# The MovieLens-100K reference run under the protocol: each tokenizer's lr and weight decay
# chosen by `bench tune` on validation, then every tokenizer trained on seeds 0, 1, 2 with its
# choice (seed 0 is the chosen trial's model) and the report built. On this 2-core machine two
# one-thread lanes share the cores: `text` (the costliest) then rqkmeans, random and
# actionpiece, and id, tiger and letter then cid and opq. With JOBS=N (a many-core or GPU
# machine) every tokenizer's trials, then every unit, run N at a time instead.
# Rerun to resume: tuning studies, trials and units continue where they stopped.
#   [JOBS=N] scripts/reference_ml100k.sh [DATA_DIR] [OUT] [TUNE_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/ml-100k}
OUT=${2:-results/reference-protocol}
TUNE=${3:-results/tune-ml100k-cpu}
BENCH=${BENCH:-.venv/bin/bench}  # may be a command with arguments (python -m bench.cli)
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p logs
common=(--dataset "ml-100k:$DATA" --preset cpu)
ALL=id,text,tiger,letter,rqkmeans,opq,cid,random,actionpiece
if [ "${JOBS:-0}" -gt 0 ]; then
  unset OMP_NUM_THREADS MKL_NUM_THREADS  # each job gets cores // JOBS threads
  $BENCH tune --tokenizers "$ALL" "${common[@]}" --out "$TUNE" --jobs "$JOBS"
  $BENCH run --tokenizers "$ALL" "${common[@]}" --seeds 0,1,2 --tuned "$TUNE" --out "$OUT" --jobs "$JOBS"
  exit 0
fi
lane() {
  $BENCH tune --tokenizers "$1" "${common[@]}" --out "$TUNE" &&
    $BENCH run --tokenizers "$1" "${common[@]}" --seeds 0,1,2 --tuned "$TUNE" --out "$OUT"
}
# the tokenizers of 2025-26 follow (issues 17, 18), split so that both lanes cost about the same
{ lane text && lane rqkmeans,random && lane actionpiece; } > logs/lane-text.log 2>&1 &
text=$!
{ lane id,tiger,letter && lane cid,opq; } > logs/lane-id-tiger-letter.log 2>&1 &
rest=$!
wait "$text" "$rest"
$BENCH report "$OUT"
