"""The top-level result files of a run folder, merged from its finished units.

Each (tokenizer, seed) unit writes its own files and a `done` marker; the run folder's
metrics.csv, per_user.csv, rankings.csv, history.csv and timings.csv are their concatenation.
Merging reads the labels and seeds from config.json on disk, so a run that was killed before
its merge, or several runs sharing one folder (one per core), end with every finished unit."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from bench.evaluation.significance import REFERENCE_ROWS
from bench.io import atomic_write_csv

RESULT_FILES = ("metrics.csv", "per_user.csv", "rankings.csv", "history.csv", "timings.csv")


def finished_units(run_dir: Path) -> list[Path]:
    """Done units of the labels and seeds that config.json lists, in name order."""
    config = json.loads((run_dir / "config.json").read_text())
    labels = config.get("labels") or config.get("tokenizers", [])  # labels: variants of a tokenizer have their own
    wanted = {f"{label}-seed{seed}" for label in [*REFERENCE_ROWS, *labels]
              for seed in config.get("seeds", [])}
    return [u for u in sorted(p.parent for p in (run_dir / "units").glob("*/done")) if u.name in wanted]


def has_units(run_dir: Path) -> bool:
    return (run_dir / "config.json").is_file() and any((run_dir / "units").glob("*/done"))


def merge_units(run_dir: Path, data_seconds: float | None = None) -> None:
    """Rewrite the top-level result files from the finished units. `data_seconds`: the data
    stage's time; None keeps the one already in timings.csv, if any."""
    if data_seconds is None and (run_dir / "timings.csv").is_file():
        old = pd.read_csv(run_dir / "timings.csv")
        rows = old[(old["tokenizer"] == "all") & (old["stage"] == "data")]["seconds"]
        data_seconds = float(rows.iloc[0]) if len(rows) else None
    units = finished_units(run_dir)
    for name in RESULT_FILES:
        frames = [pd.read_csv(u / name, dtype={"user": str, "item": str}) for u in units
                  if (u / name).is_file() and (u / name).stat().st_size > 1]
        frames = [f for f in frames if len(f.columns)]
        if name == "timings.csv" and frames and data_seconds is not None:  # the data stage first
            frames.insert(0, pd.DataFrame([{"tokenizer": "all", "seed": -1, "stage": "data", "seconds": data_seconds}]))
        if frames:
            atomic_write_csv(run_dir / name, pd.concat(frames, ignore_index=True))
