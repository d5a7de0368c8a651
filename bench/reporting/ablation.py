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
from bench.reporting.format import num as _num
from bench.reporting.format import p_text as _p
from bench.reporting.protocol import reference_names


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
    refs = [str(r) for r in dict.fromkeys(data["reference"])]
    ref = refs[0] if len(refs) == 1 else "its reference"  # a collision table: each tokenizer's suffix row
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
            if variant != r["reference"]:
                seed_p = f", seeds {_p(r['p_seed_holm'])}" if not pd.isna(r.get("p_seed_holm", np.nan)) else ""
                against = "" if len(refs) == 1 else f" vs {r['reference']}"
                row[f"{label(metric, 10)} vs {ref}"] = (f"{100 * r['rel_diff']:+.1f}%{against} (p users {_p(r['p_holm'])}{seed_p})"
                                                       if not pd.isna(r["rel_diff"]) else "")
        row.update(code_columns(stats, variant))
        rows.append(row)
    table = pd.DataFrame(rows)
    first = ["variant", "what it changes"] + [c for m in ("recall", "ndcg") for c in (label(m, 10), f"{label(m, 10)} vs {ref}")]
    table = table[[c for c in first if c in table] + [c for c in table if c not in first]]
    return ["## Ablation", "", f"Each variant against **{reference_names(data)}** ({split} split; mean ± std over seeds; relative "
            "difference; Holm-corrected p-values of the paired t-test over users and of the seed-aware test). Code "
            "figures: mean ± std over seeds; colliding items as first assigned (argmin) and before a numbering token; "
            "CF neighbours: the share of each item's 10 nearest neighbours by CF embedding that have its level-0 code, "
            "and the same share for random pairs:", "", md_table(table.fillna("")), "",
            *claims_section(sig, stats, md_table, split)]


# the paper's claims (LETTER, CIKM 2024, Table 4 and its analysis): (claim, variant the full model
# is compared with, what is compared, the direction the claim expects of full minus variant)
LETTER_CLAIMS = [
    ("the collaborative loss helps", "letter-no-cf", "ndcg", 1),
    ("the diversity loss helps", "letter-no-div", "ndcg", 1),
    ("the diversity loss raises code usage", "letter-no-div", "level0_used", 1),
    ("tau 0.7 beats plain cross-entropy (tau 1)", "letter-tau1", "ndcg", 1),
]


def claims_section(sig: pd.DataFrame | None, stats: pd.DataFrame | None, md_table: Callable[[pd.DataFrame], str],
                   split: str = "test", alpha: float = 0.05) -> list[str]:
    """One line per claim of the paper: reproduced (the expected direction, p < alpha),
    contradicted (the opposite direction, p < alpha) or inconclusive. NDCG@10 claims read the
    seed-aware Holm p-value when there are several seeds (else the per-user one); the code-usage
    claim a paired t-test over seeds on level-0 codes used."""
    from scipy import stats as scipy_stats

    if sig is None or sig.empty or not set(v for _, v, _, _ in LETTER_CLAIMS) <= set(sig["tokenizer"]):
        return []
    data = sig[(sig["split"] == split) & (sig["reference"] == "letter")]
    rows = []
    for claim, variant, what, sign in LETTER_CLAIMS:
        if what == "ndcg":
            hit = data[(data["tokenizer"] == variant) & (data["metric"] == "ndcg") & (data["k"] == 10)]
            if hit.empty:
                continue
            r = hit.iloc[0]
            seeded = not pd.isna(r.get("p_seed_holm", np.nan))
            p = r["p_seed_holm"] if seeded else r["p_holm"]
            change = -r["rel_diff"]  # full against the variant (rel_diff is the variant's against full)
            figure = f"{variant}: NDCG@10 {100 * r['rel_diff']:+.1f}% against the full model"
            test = "seed-aware test, Holm" if seeded else "paired t-test over users, Holm"
        else:
            if stats is None or stats.empty:
                continue
            level0 = stats[stats["level"] == 0].set_index(["tokenizer", "seed"])["used"]
            if "letter" not in level0 or variant not in level0:
                continue
            full, other = level0["letter"], level0[variant]
            common = full.index.intersection(other.index)
            change = float((full[common] - other[common]).mean())
            p = float(scipy_stats.ttest_rel(full[common], other[common]).pvalue) if len(common) > 1 else np.nan
            figure = f"level-0 codes used: full model {change:+.1f} against {variant} (mean over {len(common)} seed{'s' if len(common) != 1 else ''})"
            test = "paired t-test over seeds"
        if pd.isna(p) or p >= alpha:
            verdict = "inconclusive"
        else:
            verdict = "reproduced" if np.sign(change) == sign else "contradicted"
        rows.append({"claim": claim, "against": variant, "verdict": verdict, "figure": figure,
                     "p": f"{_p(p)} ({test})" if not pd.isna(p) else f"none: one seed ({test})"})
    if not rows:
        return []
    return ["### The paper's claims", "", f"Each claim read on the {split} split (p < {alpha}: reproduced in the "
            "expected direction or contradicted in the opposite one; otherwise inconclusive):", "",
            md_table(pd.DataFrame(rows)), ""]


def _spread(seeds: pd.DataFrame | None, variant: str, metric: str, split: str) -> str:
    if seeds is None:
        return ""
    hit = seeds[(seeds["tokenizer"] == variant) & (seeds["metric"] == metric) & (seeds["k"] == 10) &
                (seeds["split"] == split)]
    if hit.empty or hit["n_seeds"].iloc[0] < 2:
        return ""
    return f" ± {hit['std'].iloc[0]:.4f}"


__all__ = ["LETTER_CLAIMS", "ablation_section", "claims_section", "code_columns"]
