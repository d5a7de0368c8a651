"""What a run writes besides its results: config.json (its settings, checked when a run
resumes or shares the folder, and merged across the runs that share it) and each unit's
files, each written atomically with the `done` marker last."""

from __future__ import annotations

import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.config import setting_differences
from bench.datasets import Dataset, Samples
from bench.errors import BenchError
from bench.evaluation.metrics import per_user_metrics, target_ranks, tidy_means
from bench.io import atomic_write_csv, atomic_write_text
from bench.stage_clock import Elapsed

# settings that must match for a rerun to resume in the same folder
_RESUME_KEYS = ("dataset", "preset", "backbone", "recipe", "t5", "causal", "synthetic", "data_options", "tokenizer_options",
                "sasrec", "embedding_model", "tuned")


def unit_dir(out: Path, label: str, seed: int) -> Path:
    """Where a run folder keeps one unit's files (tokenizer variant x seed)."""
    return Path(out) / "units" / f"{label}-seed{seed}"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("bench", "torch", "transformers", "accelerate", "peft", "numpy", "pandas", "scipy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def versions_text(packages: dict[str, str]) -> str:
    """`versions()` as one line, 'python 3.11.7, torch 2.13.0+cpu, ...': the report's and each
    unit's timings rows (`software`: a run whose units span sessions and machines may mix
    versions, and its folder's config.json keeps only the last run's)."""
    return ", ".join(f"{name} {version}" for name, version in packages.items())


def git_commit(folder: Path = Path(__file__).parent) -> str | None:
    """HEAD's commit, plus "+modified" when files under `folder` (the package) differ from it,
    edited or new and not ignored: the code that ran is then not that commit's."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True, cwd=folder).stdout.strip()

    try:
        head = git("rev-parse", "HEAD")
        modified = git("status", "--porcelain", "--", ".")
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+modified" if modified else "")


def merge_saved_config(path: Path, resolved: dict[str, Any], out: Path) -> dict[str, Any]:
    """`resolved` checked against the config.json a run of this folder saved, if any (the
    settings must agree) and merged with it (tokenizers, labels, seeds, tuned choices)."""
    if not path.is_file():
        return resolved
    resolved_tokenizers, resolved_seeds = resolved["tokenizers"], resolved["seeds"]
    try:
        old = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BenchError(f"{path}: unreadable ({type(e).__name__}); use another --out or delete the folder") from None
    for key in (*_RESUME_KEYS, "data"):
        old_value = old.get(key) if key != "data" else old.get("data", {}).get("fingerprint")
        new_value = resolved[key] if key != "data" else resolved["data"]["fingerprint"]
        if key == "tuned":  # runs of other tokenizers may share the folder: same search, same choices
            differences = tuning_differences(old_value, new_value, _unit_labels(out))
        else:
            differences = setting_differences(key, old_value, new_value)
        if differences:
            raise BenchError(f"{out}: holds a run with another {key} ({'; '.join(differences)}); "
                             "use another --out or delete the folder")
    if old.get("tuned") and resolved["tuned"]:
        resolved["tuned"]["chosen"] = {**old["tuned"]["chosen"], **resolved["tuned"]["chosen"]}
    resolved["tokenizers"] = list(dict.fromkeys(old.get("tokenizers", []) + resolved_tokenizers))
    resolved["labels"] = list(dict.fromkeys(old.get("labels", []) + resolved["labels"]))
    resolved["seeds"] = sorted(set(old.get("seeds", [])) | set(resolved_seeds))
    return resolved


def _unit_labels(out: Path) -> set[str]:
    """The labels of the units a run folder holds, finished or begun (LABEL of LABEL-seedN)."""
    return {p.name.rpartition("-seed")[0] for p in (Path(out) / "units").glob("*-seed*") if p.is_dir()}


def tuning_differences(old: dict[str, Any] | None, new: dict[str, Any] | None,
                       labels: set[str] | None = None) -> list[str]:
    """What two runs sharing a folder must agree on about --tuned: the search, and the choice
    for every tokenizer both of them train (each may name only its own tokenizers) that has
    units in the folder (`labels`; None: every one). A choice no unit was trained with yet (its
    search reopened after a trial was set aside) gives way to the new one."""
    if not old or not new:
        return [] if not old and not new else ["--tuned " + ("absent" if not old else "given") + " there"]
    search = setting_differences("search", old["search"], new["search"])
    if search:
        return [f"search {d}" for d in search]
    trained = lambda name: labels is None or any(x == name or x.startswith(name + "-") for x in labels)  # noqa: E731
    return [f"{name}: {json.dumps(old['chosen'][name]['settings'])} there, {json.dumps(new['chosen'][name]['settings'])} "
            f"here (supersede or delete its units to train it with the new choice)"
            for name in sorted(set(old["chosen"]) & set(new["chosen"]))
            if trained(name) and old["chosen"][name]["settings"] != new["chosen"][name]["settings"]]


def write_unit_files(unit: Path, data: Dataset, samples: dict[str, Samples], label: str, seed: int,
                     rankings: dict[str, np.ndarray], history: list[dict], timings: dict[str, Elapsed],
                     extra: dict | None = None, code_ranks: dict[str, np.ndarray] | None = None,
                     machine: str = "") -> list[tuple]:
    """All of a unit's files, each atomic; `done` last, so a half-written unit is redone.
    `code_ranks`: per split, the targets' code-level ranks of a tokenizer that keeps
    collisions, written beside the item-level metrics as code_recall, code_ndcg, code_mrr.
    `machine` (`stage_clock.machine_name`) and the package versions go into every timings
    row, the code's commit into `done`. Returns the metric rows (dataset, tokenizer, seed, split, metric, k, value)."""
    dataset = data.name
    metric_rows, user_frames, ranking_frames = [], [], []
    for split_name, items in rankings.items():
        s = samples[split_name]
        per_user = per_user_metrics(target_ranks(items, s.targets))
        for metric, k, value in tidy_means(per_user):
            metric_rows.append((dataset, label, seed, split_name, metric, k, value))
        if code_ranks and split_name in code_ranks:
            code = per_user_metrics(code_ranks[split_name])
            for metric, k, value in tidy_means(code):
                metric_rows.append((dataset, label, seed, split_name, f"code_{metric}", k, value))
            per_user = pd.concat([per_user, code.add_prefix("code_")], axis=1)
        users = [data.user_ids[u] for u in s.users]
        user_frames.append(pd.concat([pd.DataFrame({"dataset": dataset, "tokenizer": label, "seed": seed,
                                                    "split": split_name, "user": users}), per_user], axis=1))
        k = items.shape[1]
        item_ids = np.array(data.item_ids + [""], dtype=object)
        ranking_frames.append(pd.DataFrame({
            "dataset": dataset, "tokenizer": label, "seed": seed, "split": split_name,
            "user": np.repeat(users, k), "rank": np.tile(np.arange(1, k + 1), len(users)),
            "item": item_ids[items.reshape(-1)]}).query("item != ''"))
    atomic_write_csv(unit / "metrics.csv", pd.DataFrame(metric_rows, columns=["dataset", "tokenizer", "seed", "split", "metric", "k", "value"]))
    atomic_write_csv(unit / "per_user.csv", pd.concat(user_frames, ignore_index=True))
    atomic_write_csv(unit / "rankings.csv", pd.concat(ranking_frames, ignore_index=True))
    atomic_write_csv(unit / "history.csv", pd.DataFrame([{"tokenizer": label, "seed": seed, **h} for h in history],
                                                        columns=None if history else ["tokenizer", "seed", "epoch"]))
    software = versions_text(versions())
    atomic_write_csv(unit / "timings.csv", pd.DataFrame([{"tokenizer": label, "seed": seed, "stage": k, "seconds": v.wall,
                                                          "cpu_seconds": v.cpu, "machine": machine, "software": software}
                                                         for k, v in timings.items()]))
    atomic_write_text(unit / "done", json.dumps({**(extra or {}), "git_commit": git_commit()}))
    return metric_rows
