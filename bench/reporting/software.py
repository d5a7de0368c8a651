"""The report's note on software: which package versions the units ran with, when they differ.

A run resumed across sessions and machines may train its units under different versions of
torch, transformers and the rest; config.json keeps only the versions of the run that wrote it
last. Each unit records its own in timings.csv (`software`), and the report lists the
versions that differ, with the units that ran under each."""

from __future__ import annotations

import pandas as pd

from bench.reporting import plots
from bench.reporting.format import md_table

NOT_RECORDED = "not recorded"


def _packages(software: str) -> dict[str, str]:
    """`run_files.versions_text` read back: 'torch 2.13.0, numpy 2.4.6' as {'torch': '2.13.0',
    'numpy': '2.4.6'}; {} when not recorded."""
    if software == NOT_RECORDED:
        return {}
    return dict(part.split(" ", 1) for part in software.split(", ") if " " in part)


def software_table(timings: pd.DataFrame | None) -> pd.DataFrame | None:
    """One row per set of versions the units ran with, showing only the packages that differ
    between the recorded sets (all of them when units that recorded none stand beside one set);
    None when every unit ran with the same versions, or none recorded its own."""
    if timings is None or "software" not in timings.columns:
        return None
    units = timings[timings["tokenizer"] != "all"].drop_duplicates(["tokenizer", "seed"])
    software = units["software"].fillna("").astype(str).replace("", NOT_RECORDED)
    if software.nunique() < 2:
        return None
    packages = {s: _packages(s) for s in dict.fromkeys(software)}
    recorded = [p for p in packages.values() if p]
    names = list(dict.fromkeys(name for p in recorded for name in p))
    differing = [n for n in names if len({p.get(n, NOT_RECORDED) for p in recorded}) > 1]
    differing = differing or names  # one set recorded, beside units that recorded none: all of it
    rows = []
    for stamp, versions in packages.items():
        mine = units[software == stamp]
        rows.append({**{n: versions.get(n, NOT_RECORDED) for n in differing}, "units": len(mine),
                     "tokenizers": ", ".join(plots.row_order([str(t) for t in mine["tokenizer"].unique()]))})
    return pd.DataFrame(rows)


def software_section(timings: pd.DataFrame | None) -> list[str]:
    table = software_table(timings)
    if table is None:
        return []
    return ["## Software", "",
            "The units ran with different package versions (the versions above are those of the run that "
            "last wrote config.json); the packages that differ:", "", md_table(table), ""]
