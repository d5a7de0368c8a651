"""`bench supersede`: set finished results aside when a rule, a default or the codes change
after they were made. A run's unit, or a search's trial, leaves the results (a rerun of the
same command trains it again under today's settings), and its figures go into the folder's
`superseded.csv` with the reason, which the report lists: nothing is dropped silently, and a
reader can see what a result was before it was redone.

A unit keeps its codes unless `drop_codes` (when the codes are what changed): a fit repeats
bit for bit only on one machine, so codes that are still right are better kept. A trial keeps
its folder's codes (every trial of a search trains on the search's one fit)."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import BenchError
from bench.io import atomic_write_csv
from bench.results import RESULT_FILES
from bench.run_files import unit_dir
from bench.tuning import SUPERSEDED, TUNING_COLUMNS, settings_hash, superseded_trials, write_summary

UNIT_COLUMNS = ["tokenizer", "seed", "test_recall@10", "test_ndcg@10", "best_epoch", "epochs", "codes_md5", "why"]
TRIAL_COLUMNS = [*TUNING_COLUMNS, "codes_md5", "why"]


def supersede(folder: Path, names: list[str], why: str, drop_codes: bool = False) -> list[dict[str, Any]]:
    """Set aside units (`LABEL-seedN`) of a run folder or trials (`TOKENIZER:NUMBER`) of a
    tuning folder (one with search.json); returns the rows written to superseded.csv."""
    if not why.strip():
        raise BenchError("bench supersede: --why must say why the results are set aside")
    if (folder / "search.json").is_file():
        if drop_codes:
            raise BenchError(f"{folder}: --drop-codes is for run folders (a search's trials share one fit of the codes)")
        return [supersede_trial(folder, name, why) for name in names]
    if not (folder / "config.json").is_file():
        raise BenchError(f"{folder}: neither a run folder (config.json) nor a tuning folder (search.json)")
    return [supersede_unit(folder, name, why, drop_codes) for name in names]


def supersede_unit(run_dir: Path, name: str, why: str, drop_codes: bool) -> dict[str, Any]:
    label, _, seed = name.rpartition("-seed")
    if not label or not seed.isdigit():
        raise BenchError(f"{run_dir}: {name!r} is not a unit name (LABEL-seedN, as under units/)")
    unit = unit_dir(run_dir, label, int(seed))
    if not (unit / "done").is_file():
        raise BenchError(f"{unit}: not a finished unit (no done file)")
    done = json.loads((unit / "done").read_text())
    codes = run_dir / "codes" / f"{name}.index.json"
    row = {"tokenizer": label, "seed": int(seed), "test_recall@10": _test_metric(unit, "recall"),
           "test_ndcg@10": _test_metric(unit, "ndcg"), "best_epoch": done.get("best_epoch"),
           "epochs": done.get("epochs"), "codes_md5": _md5(codes), "why": why}
    _append(run_dir / SUPERSEDED, row, UNIT_COLUMNS)
    shutil.rmtree(unit)
    for merged in (run_dir / f for f in RESULT_FILES):  # the unit's rows leave the merged files
        if merged.is_file() and merged.stat().st_size > 1:
            frame = pd.read_csv(merged, dtype=str, keep_default_na=False)
            kept = frame[~((frame["tokenizer"] == label) & (frame["seed"] == seed))]
            if len(kept) < len(frame):
                atomic_write_csv(merged, kept)
    if drop_codes:
        for path in (codes, codes.with_suffix(".state.json")):
            path.unlink(missing_ok=True)
    return row


def supersede_trial(tune_dir: Path, name: str, why: str) -> dict[str, Any]:
    """The trial leaves the study's count (`superseded_trials`), so `bench tune` runs its
    settings again; its unit folder goes, so that run trains anew."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    tokenizer, _, number = name.rpartition(":")
    if not tokenizer or not number.isdigit():
        raise BenchError(f"{tune_dir}: {name!r} is not a trial (TOKENIZER:NUMBER, as in tuning.csv)")
    if (tokenizer, int(number)) in superseded_trials(tune_dir):
        raise BenchError(f"{tune_dir}: trial {name} is already in {SUPERSEDED}")
    storage = JournalStorage(JournalFileBackend(str(tune_dir / "optuna.journal")))
    try:
        study = optuna.load_study(study_name=tokenizer, storage=storage)
    except KeyError:
        raise BenchError(f"{tune_dir}: no search of {tokenizer!r}") from None
    trial = next((t for t in study.get_trials(deepcopy=False) if t.number == int(number)), None)
    if trial is None or trial.state != optuna.trial.TrialState.COMPLETE:
        raise BenchError(f"{tune_dir}: {tokenizer} has no finished trial {number}")
    seed = json.loads((tune_dir / "search.json").read_text())["seed"]
    result = trial.user_attrs.get("result", {})
    folders = [p for p in sorted((tune_dir / "trials").glob(f"*-{settings_hash(trial.params)}"))
               if unit_dir(p, tokenizer, seed).is_dir()]
    row = {"tokenizer": tokenizer, "trial": trial.number, "settings": json.dumps(trial.params, sort_keys=True),
           "valid_ndcg@10": trial.value, **{k: result.get(k) for k in TUNING_COLUMNS[4:]},
           "codes_md5": _md5(folders[0] / "codes" / f"{tokenizer}-seed{seed}.index.json") if folders else "",
           "why": why}
    _append(tune_dir / SUPERSEDED, row, TRIAL_COLUMNS)
    for folder in folders:
        shutil.rmtree(unit_dir(folder, tokenizer, seed))
    write_summary(tune_dir, storage)
    return row


def _test_metric(unit: Path, metric: str) -> float:
    try:
        rows = pd.read_csv(unit / "metrics.csv")
        value = rows.query("split == 'test' and metric == @metric and k == 10")["value"]
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, KeyError):
        return math.nan
    return float(value.iloc[0]) if len(value) else math.nan


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()[:8] if path.is_file() else ""


def _append(path: Path, row: dict[str, Any], columns: list[str]) -> None:
    """One row more in superseded.csv; columns a file written before them lacks are left empty."""
    old = pd.read_csv(path, dtype=str, keep_default_na=False) if path.is_file() else pd.DataFrame(columns=columns)
    frame = pd.concat([old, pd.DataFrame([row])], ignore_index=True)
    atomic_write_csv(path, frame[[*columns, *[c for c in frame.columns if c not in columns]]])
