"""Item- against code-level scoring for rows whose codes are kept colliding (collisions=keep,
or what LETTER's Sinkhorn rounds leave): how much scoring a hit at a shared code's rank, as
LETTER's release does, inflates Recall and NDCG. Every other table and test is item level."""

from __future__ import annotations

from typing import Callable

import pandas as pd

CODE_PREFIX = "code_"


def item_level(metrics: pd.DataFrame | None) -> pd.DataFrame | None:
    """metrics.csv without its code-level rows (what the tables, plots and tests use)."""
    if metrics is None or "metric" not in metrics:
        return metrics
    return metrics[~metrics["metric"].astype(str).str.startswith(CODE_PREFIX)]


def collision_scoring_section(metrics: pd.DataFrame | None, md_table: Callable[[pd.DataFrame], str],
                              order: Callable[[list[str]], list[str]], split: str = "test") -> list[str]:
    if metrics is None or "metric" not in metrics:
        return []
    data = metrics[(metrics["split"] == split) & (metrics["k"] == 10)]
    coded = sorted(set(data[data["metric"].astype(str).str.startswith(CODE_PREFIX)]["tokenizer"]))
    if not coded:
        return []
    rows = []
    for tok in order(coded):
        row: dict[str, str] = {"tokenizer": tok}
        for metric, name in (("recall", "R@10"), ("ndcg", "N@10")):
            item = data[(data["tokenizer"] == tok) & (data["metric"] == metric)]["value"].mean()
            code = data[(data["tokenizer"] == tok) & (data["metric"] == CODE_PREFIX + metric)]["value"].mean()
            row[f"{name} item"], row[f"{name} code"] = f"{item:.4f}", f"{code:.4f}"
            row[f"{name} inflation"] = f"{100 * (code / item - 1):+.1f}%" if item > 0 else ""
        rows.append(row)
    return ["## Collisions: item- and code-level scoring", "",
            f"Rows whose items may share a code ({split} split, mean over seeds). Item level (every other table): "
            "the items of a code take consecutive ranks, so the target may fall behind its code-mates. Code level "
            "(LETTER's release): a hit at the code's rank counts for any of its items (`code_*` in metrics.csv "
            "and per_user.csv).", "", md_table(pd.DataFrame(rows)), ""]
