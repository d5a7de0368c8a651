#!/usr/bin/env bash
# Paper-size training throughput with several units on one GPU: for each N, N copies of
# bench.gpu_check (T5 of the `paper` preset, its batch of 1024, bf16) started at once on the
# same device; prints each N's total training samples/s, the per-unit mean, and the peak memory
# of one unit. What `--jobs N` gains on a card.
#   scripts/gpu_concurrency.sh OUT_DIR [N ...]        (default N: 1 4 12)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: scripts/gpu_concurrency.sh OUT_DIR [N ...]}
shift
COUNTS=${*:-1 4 12}
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-20}
# GPU_CHECK_ARGS: more bench.gpu_check options, e.g. --tiny for a CPU smoke test
mkdir -p "$OUT"
for n in $COUNTS; do
    for i in $(seq 1 "$n"); do
        # shellcheck disable=SC2086
        "$PYTHON" -m bench.gpu_check --device "$DEVICE" --steps "$STEPS" --users 64 ${GPU_CHECK_ARGS:-} \
            --json "$OUT/concurrent-$n-$i.json" > "$OUT/concurrent-$n-$i.log" 2>&1 &
    done
    wait
    "$PYTHON" - "$OUT" "$n" <<'PY'
import json, pathlib, sys
out, n = pathlib.Path(sys.argv[1]), int(sys.argv[2])
runs = [json.loads(p.read_text()) for p in sorted(out.glob(f"concurrent-{n}-*.json"))]
if len(runs) < n:
    print(f"{n} concurrent units: only {len(runs)} finished (see {out}/concurrent-{n}-*.log)")
else:
    total = sum(r["train_samples_per_s"] for r in runs)
    peak = max(r.get("train_peak_mib") or 0 for r in runs)
    print(f"{n:>2} concurrent units: {total:,.0f} training samples/s in all, {total / n:,.0f} per unit, "
          f"peak memory of one unit {peak:,.0f} MiB")
PY
done
