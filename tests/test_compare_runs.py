"""`bench compare-runs`: two run folders side by side, with ranks and changed verdicts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from click.testing import CliRunner

from bench.cli import main
from bench.reporting.compare_runs import compare_runs


def write_run(folder: Path, ndcg: dict[str, list[float]], sig: dict[str, tuple[float, float, float | None]]) -> Path:
    """metrics.csv with test NDCG@10 per seed (recall = 2 x ndcg), and significance.csv rows
    tokenizer -> (diff, p_holm, p_seed_holm) against letter."""
    folder.mkdir(parents=True)
    rows = [{"dataset": "d", "tokenizer": t, "seed": s, "split": split, "metric": m, "k": 10,
             "value": v * (2 if m == "recall" else 1) + (0.5 if split == "valid" else 0)}
            for t, values in ndcg.items() for s, v in enumerate(values)
            for split in ("valid", "test") for m in ("recall", "ndcg")]
    pd.DataFrame(rows).to_csv(folder / "metrics.csv", index=False)
    sig_rows = [{"dataset": "d", "split": "test", "metric": "ndcg", "k": 10, "tokenizer": "letter", "reference": "letter",
                 "diff": None, "p_holm": None, "p_seed_holm": None}]
    sig_rows += [{"dataset": "d", "split": "test", "metric": "ndcg", "k": 10, "tokenizer": t, "reference": "letter",
                  "diff": d, "p_holm": p, "p_seed_holm": ps} for t, (d, p, ps) in sig.items()]
    pd.DataFrame(sig_rows).to_csv(folder / "significance.csv", index=False)
    return folder


def test_ranks_cells_and_changed_verdicts(tmp_path):
    old = write_run(tmp_path / "old", {"letter": [0.04, 0.05], "id": [0.03, 0.03], "text": [0.02, 0.02]},
                    {"id": (-0.015, 0.001, 0.2), "text": (-0.025, 0.0001, 0.01)})
    new = write_run(tmp_path / "new", {"letter": [0.04], "id": [0.05], "cid": [0.01]},
                    {"id": (0.01, 0.01, None), "cid": (-0.03, 0.5, None)})
    table = compare_runs(old, new).set_index("tokenizer")
    assert list(table.index) == ["letter", "id", "cid", "text"]  # the new run's order, then the old's rest
    assert table.loc["letter", "N@10 old"] == "0.0450 ± 0.0071" and table.loc["letter", "N@10 new"] == "0.0400"
    assert table.loc["id", "R@10 new"] == "0.1000"
    assert (table.loc["letter", "rank old"], table.loc["letter", "rank new"]) == (1, 2)
    assert (table.loc["id", "rank old"], table.loc["id", "rank new"]) == (2, 1)
    assert table.loc["cid", "rank old"] == "" and table.loc["cid", "N@10 old"] == ""
    # old id: per-user p .001 but the seed-aware test (present) decides: not significant
    assert table.loc["id", "N@10 vs ref old"].startswith("n.s.") and "[seed-aware]" in table.loc["id", "N@10 vs ref old"]
    # new id: one seed, so the per-user test decides: above
    assert table.loc["id", "N@10 vs ref new"].startswith("above") and "[per-user]" in table.loc["id", "N@10 vs ref new"]
    assert table.loc["id", "verdict changed"] == "yes"
    assert table.loc["text", "N@10 vs ref old"].startswith("below") and table.loc["text", "verdict changed"] == ""
    assert table.loc["letter", "N@10 vs ref new"] == "reference" and table.loc["letter", "verdict changed"] == "no"
    # a stricter alpha turns the new id verdict into n.s., like the old one
    assert compare_runs(old, new, alpha=0.005).set_index("tokenizer").loc["id", "verdict changed"] == "no"


def test_cli_writes_markdown_and_rejects_a_folder_without_metrics(tmp_path):
    old = write_run(tmp_path / "old", {"letter": [0.04], "id": [0.03]}, {"id": (-0.01, 0.3, None)})
    result = CliRunner().invoke(main, ["compare-runs", str(old), str(old), "--out", str(tmp_path / "c.md")])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "c.md").read_text()
    assert "| id | 0.0600 | 0.0600 | 0.0300 | 0.0300 | 2 | 2 |" in text
    bad = CliRunner().invoke(main, ["compare-runs", str(old), str(tmp_path / "nowhere")])
    assert bad.exit_code == 2 and "nowhere: no metrics.csv" in bad.output and "Traceback" not in bad.output
