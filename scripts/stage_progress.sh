#!/usr/bin/env bash
# Stage (git add -f) what a long run needs to resume on another machine: its settings, the
# tuning journal, summaries and shared codes, and every *finished* unit's small files and codes. Not staged:
# checkpoints (model weights), rankings, units still training (they restart there).
#   scripts/stage_progress.sh RUN_OR_TUNE_DIR [...]; then git commit
set -euo pipefail
cd "$(dirname "$0")/.."
for top in "$@"; do
  find "$top" -name done -path "*/units/*" | while read -r done; do
    unit=$(dirname "$done")
    run=$(dirname "$(dirname "$unit")")
    for f in "$unit"/{done,training.json,metrics.csv,per_user.csv,history.csv,timings.csv}; do [ -f "$f" ] && git add -f "$f"; done
    label_seed=$(basename "$unit")
    for f in "$run/codes/$label_seed".index.json "$run/codes/$label_seed".index.state.json "$run/config.json"; do
      [ -f "$f" ] && git add -f "$f"
    done
  done
  # a search's shared codes (complete entries: the .training.json is written last)
  find "$top" -maxdepth 2 -path "$top/codes/*.index.training.json" | while read -r entry; do
    base=${entry%.training.json}
    for f in "$base".json "$base".state.json "$entry"; do [ -f "$f" ] && git add -f "$f"; done
  done
  for f in search.json optuna.journal tuning.csv tuned.json superseded.csv config.json metrics.csv history.csv \
           timings.csv significance.csv code_stats.csv report.md; do
    [ -f "$top/$f" ] && git add -f "$top/$f"
  done
done
git status --short | grep -c "^A" | xargs echo "staged files:"
