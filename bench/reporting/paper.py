"""Our figures beside the published ones (DESIGN 8: for sanity checks, never for tuning).

`bench compare-paper RESULTS` prints, for each of the run's rows that has a published
counterpart, our test Recall@10 and NDCG@10 (mean and seed std over the seeds run) next to
the paper's, and writes the table to RESULTS/paper_comparison.md. A published figure the
paper does not give is left blank, never filled in."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from bench.reporting.compare_runs import read_run, seed_cell
from bench.reporting.report import md_table

# (data set, paper row) -> metric@k -> value. LETTER (Wang et al., CIKM 2024), Table 2:
# LETTER-TIGER and TIGER, beam 20, leave-one-out. Our `precomputed-<Name>` row trains on
# LETTER's released codes with the same recipe, so it stands for LETTER-TIGER.
PUBLISHED = {
    ("Instruments", "LETTER-TIGER"): {"recall@10": 0.1122, "ndcg@10": 0.0831},
    ("Instruments", "TIGER"): {"recall@10": 0.1058},
    ("Beauty", "LETTER-TIGER"): {"recall@5": 0.0431, "ndcg@5": 0.0286, "recall@10": 0.0672, "ndcg@10": 0.0364},
}
SOURCE = "LETTER (Wang et al., CIKM 2024), Table 2"


def paper_row(label: str, dataset: str) -> str | None:
    """The published row our `label` stands for on `dataset`, if any."""
    if label.startswith("precomputed-") and (dataset, "LETTER-TIGER") in PUBLISHED:
        return "LETTER-TIGER"
    if label == "tiger" and (dataset, "TIGER") in PUBLISHED:
        return "TIGER"
    return None


def comparison_table(results: Path, metrics: tuple[str, ...] = ("recall@10", "ndcg@10")) -> pd.DataFrame:
    """One row per tokenizer of the run: ours (mean ± seed std, seeds), the paper's, the gap."""
    run = read_run(results, "ours")
    dataset = str(run.summary["dataset"].iloc[0])
    config = json.loads((results / "config.json").read_text()) if (results / "config.json").is_file() else {}
    rows = []
    for label in run.summary.index.get_level_values("tokenizer").unique():
        published_as = paper_row(str(label), dataset)
        published = PUBLISHED.get((dataset, published_as), {}) if published_as else {}
        seeds = run.summary.xs(label, level="tokenizer")["n_seeds"].max()
        row: dict[str, object] = {"tokenizer": label, "paper row": published_as or "", "seeds": int(seeds)}
        for metric in metrics:
            name, k = metric.split("@")
            row[f"{metric} ours"] = seed_cell(run, str(label), name, int(k))
            mean = run.summary.loc[(label, name, int(k)), "mean"] if (label, name, int(k)) in run.summary.index else None
            paper = published.get(metric)
            row[f"{metric} paper"] = f"{paper:.4f}" if paper is not None else ""
            row[f"{metric} ours/paper"] = f"{mean / paper:.2f}" if paper and mean is not None else ""
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs.update(dataset=dataset, preset=config.get("preset", "?"))
    return table


def write_comparison(results: Path) -> tuple[pd.DataFrame, Path]:
    table = comparison_table(results)
    text = (f"# {table.attrs['dataset']}, preset {table.attrs['preset']}: ours against the paper\n\n"
            f"Published figures: {SOURCE}. Ours: test split, mean ± std over seeds. A blank is a figure "
            "the paper does not give.\n\n" + md_table(table) + "\n")
    path = results / "paper_comparison.md"
    path.write_text(text)
    return table, path
