#!/usr/bin/env bash
# LETTER-TIGER on Instruments in one call, on one GPU: LETTER's released codes (`precomputed`)
# and the `id` baseline trained with the `paper` preset (LETTER-TIGER's recipe: effective batch
# 1024, lr 5e-4, AdamW wd 0.01, cosine with 1 % warm-up, up to 200 epochs, patience 20 on the
# validation loss), every unit of the grid at once on the card (--jobs), then our test
# Recall/NDCG@10 with seed std beside the paper's (bench compare-paper).
#   scripts/reproduce_letter.sh [DATA_DIR] [OUT] [SEEDS]
# DATA_DIR holds Instruments.inter.json and Instruments.index.json (LETTER's release).
# Environment: JOBS (units at once, default: every unit of the grid), DEVICE (default cuda),
# BENCH (the bench command, e.g. "python -m bench.cli"), EXTRA_ARGS (more `bench run` options,
# e.g. --set recipe.epochs=1 for a smoke test).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/letter/Instruments}
OUT=${2:-results/reproduce-letter-instruments}
SEEDS=${3:-0,1,2}
BENCH=${BENCH:-.venv/bin/bench}
DEVICE=${DEVICE:-cuda}
NAME=$(basename "$DATA")
INDEX="$DATA/$NAME.index.json"
[ -f "$INDEX" ] || { echo "error: $INDEX: LETTER's released codes are missing" >&2; exit 2; }
UNITS=$(( 2 * $(echo "$SEEDS" | tr ',' '\n' | grep -c .) ))
JOBS=${JOBS:-$UNITS}
start=$SECONDS
$BENCH run --dataset "letter:$DATA" --preset paper --device "$DEVICE" --tokenizers "precomputed:$INDEX,id" \
    --seeds "$SEEDS" --jobs "$JOBS" --out "$OUT" ${EXTRA_ARGS:-}
$BENCH compare-paper "$OUT"
echo "reproduce_letter: $((SECONDS - start)) s wall for $UNITS units, $JOBS at a time on $DEVICE"
