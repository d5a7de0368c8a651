#!/usr/bin/env bash
# Units as jobs on this machine: `bench run --tokenizers all` on the synthetic set (quick
# preset) with --jobs 1 and with --jobs 2, one thread per job in both, side by side; prints
# both wall times, their ratio, and whether the metrics are identical. Then two `bench run`
# processes started at once on one folder: how many times each unit was trained (from their
# logs) and whether the metrics equal the one-process run's.
#   scripts/jobs_speedup.sh [WORK_DIR]      (run it on an idle machine)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p "${1:-/tmp}"
WORK=$(realpath "${1:-$(mktemp -d)}")
BENCH=${BENCH:-$PWD/.venv/bin/bench}
PYTHON=${PYTHON:-$PWD/.venv/bin/python}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p "$WORK"
timed() {  # timed NAME ARGS...: one run, its wall seconds on stdout
    local name=$1 start
    shift
    start=$EPOCHREALTIME
    mkdir -p "$WORK/cwd-$name"  # its own embedding cache: each run starts cold
    (cd "$WORK/cwd-$name" && "$BENCH" run --tokenizers all --out "$WORK/$name" "$@" > "$WORK/$name.log" 2>&1)
    "$PYTHON" -c "print($EPOCHREALTIME - $start)"
}
one=$(timed jobs1 --jobs 1 --threads-per-job 1)
two=$(timed jobs2 --jobs 2 --threads-per-job 1)
"$PYTHON" - "$WORK" "$one" "$two" <<'PY'
import sys
import pandas as pd
work, one, two = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
a, b = (pd.read_csv(f"{work}/{n}/metrics.csv").sort_values(["tokenizer", "seed", "split", "metric", "k"])
        .reset_index(drop=True) for n in ("jobs1", "jobs2"))
print(f"--jobs 1: {one:.0f} s; --jobs 2: {two:.0f} s; ratio {one / two:.2f}x (one thread per job)")
print(f"metrics identical: {a.equals(b)} ({len(a)} rows)")
PY
# two processes at once on one folder (and one cache), one thread each
mkdir -p "$WORK/cwd-shared" && cd "$WORK/cwd-shared"
"$BENCH" run --tokenizers all --out "$WORK/shared" > "$WORK/shared-a.log" 2>&1 &
"$BENCH" run --tokenizers all --out "$WORK/shared" > "$WORK/shared-b.log" 2>&1
wait
"$PYTHON" - "$WORK" <<'PY'
import re, sys
import pandas as pd
work = sys.argv[1]
trained = {}
for name in ("a", "b"):
    for line in open(f"{work}/shared-{name}.log", errors="replace").read().replace("\r", "\n").splitlines():
        m = re.match(r"(\S+) seed (\d+): test Recall@10", line)
        if m:
            trained.setdefault(m.group(1), []).append(name)
print("units trained, by process:", {unit: by for unit, by in sorted(trained.items())})
print("each unit trained once:", all(len(by) == 1 for by in trained.values()))
a, b = (pd.read_csv(f"{work}/{n}/metrics.csv").sort_values(["tokenizer", "seed", "split", "metric", "k"])
        .reset_index(drop=True) for n in ("jobs1", "shared"))
print("metrics equal to the one-process run:", a.equals(b))
PY
