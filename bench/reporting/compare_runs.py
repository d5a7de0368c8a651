"""Two runs of the same grid side by side (e.g. the reference run before and after a protocol
change): per tokenizer, test Recall@10 and NDCG@10 (mean ± seed std), the rank by NDCG@10 in
each run, and the verdict against each run's reference tokenizer, so a reader sees which
conclusions changed and which did not.

The verdict is read from each run's significance.csv: "above" / "below" when the Holm-corrected
p-value is under `alpha`, else "n.s."; the seed-aware test (p_seed_holm) decides when the run
has it (two or more seeds), else the per-user paired test (p_holm). The table says which."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.evaluation.significance import seed_summary
from bench.reporting.format import md_table

METRICS = (("recall", 10), ("ndcg", 10))
RANK_BY = ("ndcg", 10)


@dataclass
class RunFigures:
    """What the comparison reads from one run folder."""

    label: str
    summary: pd.DataFrame  # test rows of seed_summary, indexed by (tokenizer, metric, k)
    significance: pd.DataFrame | None  # test rows of significance.csv


def read_run(folder: Path, label: str) -> RunFigures:
    path = folder / "metrics.csv"
    if not path.is_file():
        raise BenchError(f"{folder}: no metrics.csv (not a finished bench run)")
    metrics = pd.read_csv(path)
    summary = seed_summary(metrics)
    summary = summary[summary["split"] == "test"]
    if summary.empty:
        raise BenchError(f"{path}: no test rows")
    sig_path = folder / "significance.csv"
    sig = pd.read_csv(sig_path) if sig_path.is_file() else None
    if sig is not None:
        sig = sig[sig["split"] == "test"]
    return RunFigures(label, summary.set_index(["tokenizer", "metric", "k"]), sig)  # `dataset` stays a column


def seed_cell(run: RunFigures, tokenizer: str, metric: str, k: int) -> str:
    key = (tokenizer, metric, k)
    if key not in run.summary.index:
        return ""
    row = run.summary.loc[key]
    return f"{row['mean']:.4f}" + (f" ± {row['std']:.4f}" if row["n_seeds"] > 1 else "")


def ranks(run: RunFigures) -> dict[str, int]:
    """1 = the highest mean test NDCG@10 of the run."""
    metric, k = RANK_BY
    part = run.summary.xs((metric, k), level=("metric", "k"))["mean"]
    return {str(t): int(r) for t, r in part.rank(ascending=False, method="min").items()}


def verdict(run: RunFigures, tokenizer: str, alpha: float) -> tuple[str, str]:
    """(verdict, how it was read) of `tokenizer` against the run's reference on NDCG@10."""
    if run.significance is None:
        return "", ""
    metric, k = RANK_BY
    rows = run.significance[(run.significance["tokenizer"] == tokenizer) & (run.significance["metric"] == metric)
                            & (run.significance["k"] == k)]
    if rows.empty or pd.isna(rows["diff"].iloc[0]):
        return ("reference" if not rows.empty else ""), ""
    row = rows.iloc[0]
    seed_aware = "p_seed_holm" in row.index and pd.notna(row["p_seed_holm"])
    p = float(row["p_seed_holm"] if seed_aware else row["p_holm"])
    word = ("above" if row["diff"] > 0 else "below") if np.isfinite(p) and p < alpha else "n.s."
    return f"{word} (Δ {row['diff']:+.4f}, p {p:.2g})", "seed-aware" if seed_aware else "per-user"


def compare_runs(old: Path, new: Path, alpha: float = 0.05, labels: tuple[str, str] = ("old", "new")) -> pd.DataFrame:
    """One row per tokenizer of either run (the new run's order first)."""
    runs = (read_run(old, labels[0]), read_run(new, labels[1]))
    names: list[str] = []
    for run in reversed(runs):
        names += [str(t) for t in run.summary.index.get_level_values("tokenizer").unique() if t not in names]
    run_ranks = [ranks(run) for run in runs]
    rows = []
    for name in names:
        row: dict[str, object] = {"tokenizer": name}
        for metric, k in METRICS:
            for run in runs:
                row[f"{metric[0].upper()}@{k} {run.label}"] = seed_cell(run, name, metric, k)
        for run, rank in zip(runs, run_ranks):
            row[f"rank {run.label}"] = rank.get(name, "")
        verdicts = [verdict(run, name, alpha) for run in runs]
        for run, (word, how) in zip(runs, verdicts):
            row[f"N@10 vs ref {run.label}"] = word + (f" [{how}]" if how else "")
        words = [v[0].split(" ")[0] for v in verdicts]
        row["verdict changed"] = ("yes" if words[0] != words[1] else "no") if all(words) else ""
        rows.append(row)
    return pd.DataFrame(rows)


def comparison_markdown(table: pd.DataFrame, old: Path, new: Path, alpha: float) -> str:
    return (f"# {old} vs {new}\n\nTest split, mean ± std over seeds. Rank: by mean NDCG@10 (1 = best). "
            f"Verdict: NDCG@10 against each run's reference tokenizer, Holm-corrected, α = {alpha}; "
            "[seed-aware] = the test over seed means, [per-user] = the paired test over users.\n\n"
            + md_table(table) + "\n")
