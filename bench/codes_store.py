"""One fit of a tokenizer's codes, shared: every trial of a `bench tune` search trains on the
codes its first trial fitted (kept in the search folder's codes/), and a `bench run --tuned`
unit of the tuning seed takes them too. Without it each trial fits its own: identical on one
machine, but a fit repeats bit for bit only there (the float arithmetic of PCA, OPQ, k-means
and an RQ-VAE differs between CPUs), so a search resumed on another machine would compare
settings over different tokenizers, and the final model would not use the chosen trial's codes.

An entry is `{label}-seed{seed}.index.json` (+ `.state.json`) and, written last, the settings
of the unit that fitted it (`.training.json`): taken only by a unit with the same code settings
(`unit_reuse.same_training` over what a fit can depend on)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Iterator

from filelock import FileLock

from bench.config import RunConfig
from bench.io import atomic_write_text
from bench.unit_reuse import CODE_KEYS, copy_codes, read_settings, same_training

STORE = "codes"  # the folder's codes/, beside a search's trials/


def store_folders(config: RunConfig, seed: int) -> list[Path]:
    """Where a unit of `seed` looks for shared codes: its own store (a tuning trial's search
    folder), and for the tuning seed of a --tuned run, the search it was tuned by."""
    folders = [Path(config.codes_store)] if config.codes_store else []
    if config.tuned and seed == config.tuned["search"]["seed"]:
        folders.append(Path(config.tuned["dir"]))
    return folders


def entry(folder: Path, label: str, seed: int) -> Path:
    return folder / STORE / f"{label}-seed{seed}.index.json"


def lock_path(folder: Path, label: str, seed: int) -> Path:
    return folder / "locks" / f"codes-{label}-seed{seed}.lock"  # beside bench tune's own locks


def stored_codes(folders: list[Path], label: str, settings: dict[str, Any]) -> Path | None:
    """The first complete entry for `label` in `folders` fitted with the code settings of
    `settings` (a unit's training settings), or None."""
    for folder in folders:
        path = entry(folder, label, settings["seed"])
        if path.exists() and path.with_suffix(".state.json").exists() and same_training(
                read_settings(path.with_suffix(".training.json")), settings, CODE_KEYS):
            return path
    return None


def add_to_store(folder: Path, codes: Path, label: str, settings: dict[str, Any]) -> None:
    """`codes` (just fitted) become the store's entry; the settings file last marks it complete."""
    path = entry(folder, label, settings["seed"])
    copy_codes(codes, path)
    atomic_write_text(path.with_suffix(".training.json"), json.dumps(settings, indent=1, default=str))


@contextlib.contextmanager
def store_lock(config: RunConfig, label: str, seed: int) -> Iterator[None]:
    """Held while a unit looks for its store entry and, finding none, fits and adds one: trials
    run as parallel jobs fit once, the others wait and load it. Nothing without a store."""
    if not config.codes_store:
        yield
        return
    path = lock_path(Path(config.codes_store), label, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path)):
        yield


__all__ = ["STORE", "add_to_store", "entry", "lock_path", "store_folders", "store_lock", "stored_codes"]
