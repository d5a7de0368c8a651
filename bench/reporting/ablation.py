"""The report's ablation section: one row per variant with what it changes, Recall@10 and
NDCG@10 (mean and seed std), the change against the full model with the per-user and the
seed-aware Holm-corrected p-values, and the code statistics the losses are meant to move
(level-0 codes used, its normalised entropy, colliding items as assigned and before made
unique, and how often an item's CF neighbours share its level-0 code against random pairs)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd

from bench.evaluation.significance import seed_summary


def _num(v: Any, digits: int = 4) -> str:
    return "" if v is None or pd.isna(v) else f"{v:.{digits}f}"


def _p(v: Any) -> str:
    return "" if v is None or pd.isna(v) else (f"{v:.2e}" if v < 0.001 else f"{v:.3f}")


def _pm(values: pd.Series, digits: int = 1, scale: float = 1.0) -> str:
    """mean ± std over seeds (std blank with one seed)."""
    values = values.dropna() * scale
    if values.empty:
        return ""
    std = f" ± {values.std(ddof=1):.{digits}f}" if len(values) > 1 else ""
    return f"{values.mean():.{digits}f}{std}"


def code_columns(stats: pd.DataFrame | None, label: str) -> dict[str, str]:
    """A variant's level-0 and collision figures over its seeds (mean ± std)."""
    if stats is None or stats.empty:
        return {}
    level0 = stats[(stats["tokenizer"] == label) & (stats["level"] == 0)]
    if level0.empty:
        return {}
    out = {"level-0 codes used": _pm(level0["used"], 0), "level-0 entropy / log size": _pm(level0["normalized_entropy"], 3)}
    if "collisions_assigned" in level0:
        out["colliding as assigned"] = _pm(level0["collisions_assigned"], 0)
    out["colliding before made unique"] = _pm(level0["collisions_before_unique"], 0)
    if "cf_neighbours_share_code0" in level0 and level0["cf_neighbours_share_code0"].notna().any():
        out["CF neighbours sharing level 0 (random pairs)"] = (
            f"{_pm(level0['cf_neighbours_share_code0'], 1, 100)}% ({_pm(level0['random_pairs_share_code0'], 1, 100)}%)")
    return out


def ablation_section(config: dict[str, Any], sig: pd.DataFrame | None, metrics: pd.DataFrame | None,
                     stats: pd.DataFrame | None, md_table: Callable[[pd.DataFrame], str],
                     label: Callable[[str, int], str], split: str = "test") -> list[str]:
    names = config.get("ablation")
    if not isinstance(names, dict) or not names or sig is None or sig.empty:
        return []
    data = sig[sig["split"] == split]
    ref = str(data["reference"].iloc[0]) if not data.empty else ""
    seeds = seed_summary(metrics) if metrics is not None and not metrics.empty else None
    rows = []
    for variant, what in names.items():
        row = {"variant": variant, "what it changes": what}
        for metric in ("recall", "ndcg"):
            hit = data[(data["tokenizer"] == variant) & (data["metric"] == metric) & (data["k"] == 10)]
            if hit.empty:
                continue
            r = hit.iloc[0]
            spread = _spread(seeds, variant, metric, split)
            row[label(metric, 10)] = _num(r["mean"]) + spread
            if variant != ref:
                seed_p = f", seeds {_p(r['p_seed_holm'])}" if not pd.isna(r.get("p_seed_holm", np.nan)) else ""
                row[f"{label(metric, 10)} vs {ref}"] = (f"{100 * r['rel_diff']:+.1f}% (p users {_p(r['p_holm'])}{seed_p})"
                                                       if not pd.isna(r["rel_diff"]) else "")
        row.update(code_columns(stats, variant))
        rows.append(row)
    return ["## Ablation", "", f"Each variant against **{ref}** ({split} split; mean ± std over seeds; relative "
            "difference; Holm-corrected p-values of the paired t-test over users and of the seed-aware test). Code "
            "figures: mean ± std over seeds; colliding items as first assigned (argmin) and before a numbering token; "
            "CF neighbours: the share of each item's 10 nearest neighbours by CF embedding that have its level-0 code, "
            "and the same share for random pairs:", "", md_table(pd.DataFrame(rows).fillna("")), ""]


def _spread(seeds: pd.DataFrame | None, variant: str, metric: str, split: str) -> str:
    if seeds is None:
        return ""
    hit = seeds[(seeds["tokenizer"] == variant) & (seeds["metric"] == metric) & (seeds["k"] == 10) &
                (seeds["split"] == split)]
    if hit.empty or hit["n_seeds"].iloc[0] < 2:
        return ""
    return f" ± {hit['std'].iloc[0]:.4f}"


__all__ = ["ablation_section", "code_columns"]
