#!/usr/bin/env bash
# The MovieLens-100K grid the README reports, under the protocol: each tokenizer's lr and
# weight decay chosen by `bench tune` on validation, then every tokenizer trained on seeds 0, 1,
# 2 with its choice (seed 0 is the chosen trial's model) and the report built; then LETTER's
# ablation (seeds 0-2) and the collision-policy table (tiger and rqkmeans, seed 0), both with
# the tuned settings. On this 2-core machine two one-thread lanes share the cores, and
# `text` runs alone at two threads between their phases (see below).
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
# Most units of 4-5-token codes take 1-2 hours as one of two one-thread lanes, so they finish
# within a session even where the next session gets another machine (a unit resumes by epoch
# only on the machine that holds its checkpoint; `random`'s slow units took up to 42 epochs,
# about 2.5 hours, and some resumed across sessions). Three phases, in the order that
# closes issues soonest: (1) lane a finishes the first four tokenizers, then both lanes share
# LETTER's ablation (its units through locks); (2) `text` alone, at two threads: 423 training
# samples/s against 486 for two one-thread processes side by side (13 % less in all), but a
# unit (about 4 minutes per epoch) then fits in a session; (3) issue 17's tokenizers, each
# lane taking them in the opposite order (a tokenizer whose study the other lane holds is
# skipped: its lock), then the collision table, then the tokenizers once more: a lane that
# found a study held by the other lane takes some of its seeds now (units through locks).
lanes() { for t in "$@"; do lane "$t" || echo "lane $t: not finished here (see above)"; done; }
rest() { lanes "$@"; collision_table; lanes "$@"; }
two_lanes() {  # $1, $2: what lanes a and b run, one thread each, appending to their logs
  { set +e; eval "$1"; } >> logs/lane-a.log 2>&1 &
  local a=$!
  sleep 30  # lane a writes the shared folders' settings files (search.json, config.json) first
  { set +e; eval "$2"; } >> logs/lane-b.log 2>&1 &
  local b=$!
  wait "$a" "$b" || true  # a lane that stopped early leaves its units to the rerun
}
: > logs/lane-a.log; : > logs/lane-b.log
two_lanes "lane id,tiger,letter,actionpiece && letter_ablation" letter_ablation
OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 lane text > logs/lane-text.log 2>&1 || echo "text: not finished here (see logs/lane-text.log)"
two_lanes "rest rqkmeans random cid opq" "rest opq cid random rqkmeans"
$BENCH report "$OUT"
