#!/usr/bin/env bash
# The MovieLens-100K grid the README reports, under the protocol: each tokenizer's lr and
# weight decay chosen by `bench tune` on validation, then every tokenizer trained on seeds 0, 1,
# 2 with its choice (seed 0 is the chosen trial's model) and the report built; then LETTER's
# ablation (seeds 0-2) and the collision-policy table (tiger and rqkmeans, seed 0), both with
# the tuned settings. On this 2-core machine two one-thread lanes share the cores, each in
# the order that finishes a result soonest: `text`, then actionpiece, rqkmeans and random,
# then the collision table; and id, tiger and letter, then LETTER's ablation, cid and opq.
# With JOBS=N (a many-core or GPU machine) every tokenizer's trials, then every unit, then
# the ablations run N at a time instead.
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
RUNS=$(dirname "$OUT")  # the ablations sit beside the reference run
ABLATION=$RUNS/ablation-ml100k COLLISIONS=$RUNS/collisions-ml100k
# LETTER's tau-1 row trains what the reference run's letter row trained: it is taken from there
letter_ablation() { $BENCH ablate letter "${common[@]}" --seeds 0,1,2 --tuned "$TUNE" --reuse-units "$OUT" --out "$ABLATION" "$@"; }
collision_table() { $BENCH ablate collisions --tokenizers tiger,rqkmeans "${common[@]}" --seeds 0 --tuned "$TUNE" --out "$COLLISIONS" "$@"; }
if [ "${JOBS:-0}" -gt 0 ]; then
  unset OMP_NUM_THREADS MKL_NUM_THREADS  # each job gets cores // JOBS threads
  $BENCH tune --tokenizers "$ALL" "${common[@]}" --out "$TUNE" --jobs "$JOBS"
  $BENCH run --tokenizers "$ALL" "${common[@]}" --seeds 0,1,2 --tuned "$TUNE" --out "$OUT" --jobs "$JOBS"
  letter_ablation --jobs "$JOBS"
  collision_table --jobs "$JOBS"
  exit 0
fi
lane() {
  $BENCH tune --tokenizers "$1" "${common[@]}" --out "$TUNE" &&
    $BENCH run --tokenizers "$1" "${common[@]}" --seeds 0,1,2 --tuned "$TUNE" --out "$OUT"
}
# after the first four tokenizers: actionpiece (issue 18) and LETTER's ablation (issue 16), the
# cheapest results to finish, then the rest of issue 17; the collision table needs tiger's
# choice, made in the other lane long before. Both lanes cost about the same.
{ lane text && lane actionpiece && lane rqkmeans,random && collision_table; } > logs/lane-text.log 2>&1 &
text=$!
{ lane id,tiger,letter && letter_ablation && lane cid,opq; } > logs/lane-id-tiger-letter.log 2>&1 &
rest=$!
wait "$text" "$rest"
$BENCH report "$OUT"
