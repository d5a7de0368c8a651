"""`bench report` / `bench plot` on a small hand-made run folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from bench.cli import main
from bench.errors import DataError
from bench.evaluation.significance import SignificanceOptions
from bench.reporting import plots
from bench.reporting.report import build_plots, build_report

TOKENIZERS = {"id": 0.3, "letter": 0.5, "popularity": 0.1}
SEEDS = (0, 1)
N_USERS = 30
FAST = SignificanceOptions(n_resamples=200, n_bootstrap=200)


def _per_user_rows(rng):
    for tok, p_hit in TOKENIZERS.items():
        for seed in SEEDS:
            for split in ("valid", "test"):
                for user in range(N_USERS):
                    rank = int(rng.integers(1, 40)) if rng.random() < p_hit * 2 else 99
                    row = {"dataset": "synthetic", "tokenizer": tok, "seed": seed, "split": split, "user": user}
                    for k in (5, 10, 20):
                        row[f"recall@{k}"] = float(rank <= k)
                        row[f"ndcg@{k}"] = 1 / np.log2(rank + 1) if rank <= k else 0.0
                    row["mrr"] = 1 / rank if rank <= 20 else 0.0
                    yield row


def make_run(root: Path, ablation: bool = False, history: bool = True) -> Path:
    rng = np.random.default_rng(0)
    run = root / "tiny"
    (run / "codes").mkdir(parents=True)
    config = {"run": "tiny", "dataset": "synthetic", "preset": "quick", "tokenizers": ["id", "letter"],
              "seeds": list(SEEDS), "backbone": "t5", "recipe": {"epochs": 2, "lr": 0.001},
              "versions": {"python": "3.x"}, "git_commit": "abc123",
              "data": {"fingerprint": "f00d", "n_users": N_USERS, "n_items": 12, "n_interactions": 300}}
    if ablation:
        config["ablation"] = {"id": "no alpha", "letter": "full"}
    (run / "config.json").write_text(json.dumps(config))
    per_user = pd.DataFrame(list(_per_user_rows(rng)))
    per_user.to_csv(run / "per_user.csv", index=False)
    long = per_user.melt(id_vars=["dataset", "tokenizer", "seed", "split", "user"], var_name="col")
    long["metric"] = long["col"].str.split("@").str[0]
    long["k"] = [int(c.split("@")[1]) if "@" in c else 20 for c in long["col"]]
    metrics = long.groupby(["dataset", "tokenizer", "seed", "split", "metric", "k"], as_index=False)["value"].mean()
    metrics.to_csv(run / "metrics.csv", index=False)
    for seed in SEEDS:
        letter = {str(i): [f"<a_{i % 3}>", f"<b_{(i * 5) % 4}>"] for i in range(12)}
        (run / "codes" / f"letter-seed{seed}.index.json").write_text(json.dumps(letter))
        (run / "codes" / f"id-seed{seed}.index.json").write_text(json.dumps({str(i): [f"<item_{i}>"] for i in range(12)}))
    if history:
        pd.DataFrame([{"tokenizer": t, "seed": s, "epoch": e, "train_loss": 1 / (e + 1), "valid_ndcg@10": 0.1 * e + s * 0.01}
                      for t in ("id", "letter") for s in SEEDS for e in range(3)]).to_csv(run / "history.csv", index=False)
    pd.DataFrame([{"tokenizer": t, "seed": s, "stage": st, "seconds": 1.5}
                  for t in ("id", "letter") for s in SEEDS for st in ("tokenizer", "train", "evaluate")]
                 ).to_csv(run / "timings.csv", index=False)
    return run


def test_report_writes_tables_plots_and_is_reproducible(tmp_path):
    run = make_run(tmp_path)
    path = build_report(run, FAST)
    text = path.read_text()
    for heading in ("# Run tiny", "## Data", "## Configuration", "## Results (test split)",
                    "## Code statistics", "## Plots", "## Wall time"):
        assert heading in text
    assert "Mean ± std over seeds" in text and "against **letter**" in text
    assert "| reference | letter (default) |" in text  # the run left it to the default
    wall = text[text.index("## Wall time"):]
    assert wall.index("| id |") < wall.index("| letter |") < wall.index("| total | 6.0 | 6.0 | 6.0 | 18.0 |")
    pngs = {p.name for p in (run / "plots").glob("*.png")}
    assert pngs == {"metrics.png", "effects.png", "code_usage.png", "entropy.png", "history.png"}
    for name in pngs:
        assert f"(plots/{name})" in text
    stats = pd.read_csv(run / "code_stats.csv")
    assert set(stats["tokenizer"]) == {"id", "letter"} and set(stats["seed"]) == {0, 1}
    sig = pd.read_csv(run / "significance.csv")
    assert {"metric", "k", "tokenizer", "reference", "n_users", "mean", "ref_mean", "ci_low", "ci_high",
            "diff", "rel_diff", "d_z", "p_ttest", "p_perm", "p_holm"} <= set(sig.columns)
    first = {n: (run / n).read_bytes() for n in ("significance.csv", "code_stats.csv", "report.md")}
    build_report(run, FAST)
    assert {n: (run / n).read_bytes() for n in first} == first


def test_optional_inputs_are_skipped_and_ablation_is_drawn(tmp_path):
    run = make_run(tmp_path, ablation=True, history=False)
    (run / "per_user.csv").unlink()
    (run / "timings.csv").unlink()
    text = build_report(run).read_text()
    pngs = {p.name for p in (run / "plots").glob("*.png")}
    assert pngs == {"code_usage.png", "entropy.png", "ablation.png"}
    assert "history.png" not in text and "## Wall time" not in text
    assert "Mean ± std over seeds" in text  # metrics table from metrics.csv alone


def test_plot_functions_skip_absent_input(tmp_path):
    assert plots.metric_bars(None, tmp_path / "a.png") is None
    assert plots.effect_matrix(pd.DataFrame(), tmp_path / "b.png") is None
    assert plots.code_usage_lorenz({}, tmp_path / "c.png") is None
    assert plots.history_curves(pd.DataFrame({"tokenizer": [], "seed": [], "epoch": []}), tmp_path / "d.png") is None
    assert plots.ablation_bars(pd.DataFrame({"metric": ["ndcg"]}), tmp_path / "e.png") is None
    assert not list(tmp_path.iterdir())


def test_rows_keep_one_colour_and_place_across_plots_and_runs():
    one = plots.row_colors(["popularity", "letter", "id", "sasrec", "letter-alpha0"])
    two = plots.row_colors(["tiger", "id", "precomputed:/x/Beauty.index.json", "letter"])
    assert list(one) == ["id", "letter", "letter-alpha0", "sasrec", "popularity"]  # references last
    assert plots.row_order(["popularity", "letter", "id"]) == ["id", "letter", "popularity"]
    assert one["id"] == two["id"] and one["letter"] == two["letter"]
    assert two["precomputed:/x/Beauty.index.json"] == plots.row_colors(["precomputed"])["precomputed"]
    assert len(set(one.values())) == len(one)  # an ablation variant gets a colour no known row has


def test_cli_report_and_plot(tmp_path):
    run = make_run(tmp_path)
    runner = CliRunner()
    result = runner.invoke(main, ["report", str(run), "--reference", "id"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(run / "report.md")
    assert set(pd.read_csv(run / "significance.csv")["reference"]) == {"id"}
    assert "| reference | id |" in (run / "report.md").read_text()
    (run / "plots" / "metrics.png").unlink()
    result = runner.invoke(main, ["plot", str(run)])  # from the saved tables
    assert result.exit_code == 0, result.output
    assert "metrics.png" in result.output and (run / "plots" / "metrics.png").is_file()
    for args in (["report", str(tmp_path / "nope")], ["plot", str(tmp_path)]):
        result = runner.invoke(main, args)
        assert result.exit_code == 2 and result.output.count("\n") == 1 and "error:" in result.output


def test_bad_files_are_data_errors(tmp_path):
    run = make_run(tmp_path)
    pd.DataFrame({"tokenizer": ["id"]}).to_csv(run / "timings.csv", index=False)
    with pytest.raises(DataError, match="timings.csv: missing columns"):
        build_report(run, FAST)
    pd.DataFrame({"tokenizer": ["id"], "seed": [0], "stage": ["train"], "seconds": [1.0]}).to_csv(run / "timings.csv", index=False)
    (run / "config.json").write_text("[")
    with pytest.raises(DataError, match="config.json"):
        build_plots(run)


def test_ablation_table_lists_variants_in_order_against_the_full_model(tmp_path):
    run = make_run(tmp_path, ablation=True)
    config = json.loads((run / "config.json").read_text())
    config["ablation"] = {"letter": "full", "id": "no alpha"}  # the full model first
    (run / "config.json").write_text(json.dumps(config))
    for seed, share in zip(SEEDS, (0.5, 0.7)):  # what letter's fit measured on its CF neighbours
        (run / "codes" / f"letter-seed{seed}.index.state.json").write_text(json.dumps(
            {"diagnostics": {"cf_neighbours_share_code0": share, "random_pairs_share_code0": 0.3}}))
    text = build_report(run, FAST).read_text()
    section = text.split("## Ablation")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [r.split(" | ")[0] for r in rows] == ["| letter", "| id"]
    sig = pd.read_csv(run / "significance.csv")
    hit = sig[(sig["tokenizer"] == "id") & (sig["metric"] == "ndcg") & (sig["k"] == 10) & (sig["split"] == "test")].iloc[0]
    assert f"{100 * hit['rel_diff']:+.1f}%" in rows[1] and "no alpha" in rows[1]
    metrics = pd.read_csv(run / "metrics.csv").query("tokenizer == 'letter' and split == 'test' and metric == 'recall' and k == 10")
    assert f"{metrics['value'].mean():.4f} ± {metrics['value'].std(ddof=1):.4f}" in rows[0]  # seed spread
    cells = rows[0].split(" | ")
    assert "3 ± 0" in cells and "60.0 ± 14.1% (30.0 ± 0.0%)" in rows[0]  # level-0 codes used; CF neighbours
    assert "(30.0" not in rows[1]  # id measured nothing on CF neighbours


def test_code_table_shows_the_first_levels_and_names_what_it_cut():
    from bench.reporting.report import code_section

    def rows(tokenizer, n_levels):
        return [{"tokenizer": tokenizer, "seed": 0, "level": lv, "used": 3, "codebook_size": 4, "entropy": 1.0,
                 "normalized_entropy": 0.72, "perplexity": 2.7, "gini": 0.2, "n_items": 10, "n_unique": 10,
                 "collision_rate": 0.0, "max_group": 1, "collisions_before_unique": float("nan")} for lv in range(n_levels)]

    text = "\n".join(code_section(pd.DataFrame(rows("text", plots.MAX_LEVELS + 3) + rows("tiger", 4))))
    assert f"| text | {plots.MAX_LEVELS - 1} |" in text and f"| text | {plots.MAX_LEVELS} |" not in text
    assert "| tiger | 3 |" in text
    assert f"Levels {plots.MAX_LEVELS} and deeper of text are in code_stats.csv." in text
    assert "deeper" not in "\n".join(code_section(pd.DataFrame(rows("tiger", 4))))


def test_code_usage_panels_follow_the_row_order(tmp_path, monkeypatch):
    titles = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: titles.extend(a.get_title() for a in fig.axes if a.get_visible()))
    usage = {name: [np.ones(4)] for name in ("tiger", "letter", "id", "text")}
    plots.code_usage_lorenz(usage, tmp_path / "u.png")
    assert titles == ["id", "text", "tiger", "letter"]


def test_committed_reference_report_is_rebuilt_identically(tmp_path):
    # results/reference is committed with its report: a change to the analysis or the report
    # that would alter them fails here until the reference report is rebuilt
    reference = Path(__file__).resolve().parents[1] / "results" / "reference"
    if not (reference / "config.json").is_file():
        pytest.skip("no committed reference run")
    run = tmp_path / "reference"
    shutil.copytree(reference, run, ignore=shutil.ignore_patterns("units", "rankings.csv", "plots"))
    build_report(run)
    assert (run / "report.md").read_text() == (reference / "report.md").read_text()
    for name in ("significance.csv", "code_stats.csv"):  # last digits may differ between library versions
        pd.testing.assert_frame_equal(pd.read_csv(run / name), pd.read_csv(reference / name), rtol=1e-9)


def test_the_papers_claims_are_read_off_the_ablation():
    from bench.reporting.ablation import claims_section
    from bench.reporting.report import md_table

    def row(variant, rel, p_seed):
        return {"split": "test", "reference": "letter", "tokenizer": variant, "metric": "ndcg", "k": 10,
                "rel_diff": rel, "p_holm": 1e-4, "p_seed_holm": p_seed}

    sig = pd.DataFrame([row("letter-no-cf", -0.10, 0.01),  # full better, significant: reproduced
                        row("letter-no-div", 0.05, 0.20),  # not significant: inconclusive
                        row("letter-tau1", 0.08, 0.02)])  # tau 1 better, significant: contradicted
    stats = pd.DataFrame([{"tokenizer": t, "seed": s, "level": 0, "used": u}
                          for t, us in (("letter", (60, 62, 64)), ("letter-no-div", (40, 45, 41)))
                          for s, u in enumerate(us)])
    text = "\n".join(claims_section(sig, stats, md_table))
    lines = {line.split(" | ")[0].strip("| "): line for line in text.splitlines()
             if line.startswith("| ") and not line.startswith("| claim")}
    assert "| reproduced |" in lines["the collaborative loss helps"]
    assert "| inconclusive |" in lines["the diversity loss helps"]
    assert "| reproduced |" in lines["the diversity loss raises code usage"] and "+20.0" in lines[
        "the diversity loss raises code usage"]
    assert "| contradicted |" in lines["tau 0.7 beats plain cross-entropy (tau 1)"]
    assert "seed-aware" in lines["the collaborative loss helps"]
    assert claims_section(sig[sig["tokenizer"] != "letter-tau1"], stats, md_table) == []  # not a LETTER ablation
    one_seed = "\n".join(claims_section(sig, stats[stats["seed"] == 0], md_table))  # no test over one seed
    assert "(mean over 1 seed) | none: one seed (paired t-test over seeds) |" in one_seed


def test_the_recorded_commit_says_when_the_code_differs_from_it(tmp_path, monkeypatch):
    """A run records HEAD's commit; if the package's files were edited or added since, the
    commit alone would name code that did not run."""
    import subprocess

    from bench.run_files import git_commit

    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # git looks for no repository above it
    repo, plain = tmp_path / "repo", tmp_path / "plain"
    repo.mkdir(), plain.mkdir()

    def git(*args):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo,
                              check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    (repo / "code.py").write_text("x = 1\n")
    (repo / ".gitignore").write_text("__pycache__/\n")
    git("add", "code.py", ".gitignore")
    git("commit", "-q", "-m", "one")
    head = git("rev-parse", "HEAD")
    (repo / "__pycache__").mkdir()
    (repo / "__pycache__" / "code.pyc").write_text("ignored\n")  # ignored files do not count
    assert git_commit(repo) == head
    (repo / "code.py").write_text("x = 2\n")
    assert git_commit(repo) == head + "+modified"
    git("checkout", "-q", "code.py")
    (repo / "new_module.py").write_text("y = 1\n")  # a new, not ignored file is code that ran too
    assert git_commit(repo) == head + "+modified"
    assert git_commit(plain) is None  # not a repository: no commit, no error


def test_a_collision_table_tests_each_policy_against_its_own_suffix_row(tmp_path):
    from bench.ablation import collision_ablation
    from bench.config import preset_config

    table = collision_ablation(preset_config("quick", tokenizers=["tiger", "rqkmeans"]))
    assert table.references["rqkmeans-keep"] == "rqkmeans-suffix" and table.references["tiger-reassign"] == "tiger-suffix"
    run = make_run(tmp_path)
    names = {"id": "tiger-suffix", "letter": "tiger-keep", "popularity": "rqkmeans-suffix"}
    per_user = pd.read_csv(run / "per_user.csv").replace({"tokenizer": names})
    second = per_user[per_user["tokenizer"] == "tiger-keep"].assign(tokenizer="rqkmeans-keep")
    pd.concat([per_user, second]).to_csv(run / "per_user.csv", index=False)
    metrics = pd.read_csv(run / "metrics.csv").replace({"tokenizer": names})
    pd.concat([metrics, metrics[metrics["tokenizer"] == "tiger-keep"].assign(tokenizer="rqkmeans-keep")]
              ).to_csv(run / "metrics.csv", index=False)
    config = json.loads((run / "config.json").read_text())
    config.update(tokenizers=["tiger", "rqkmeans"], reference=table.reference, references=table.references,
                  ablation={label: table.ablation[label] for label in ("tiger-suffix", "tiger-keep", "rqkmeans-suffix", "rqkmeans-keep")})
    (run / "config.json").write_text(json.dumps(config))
    text = build_report(run).read_text()
    sig = pd.read_csv(run / "significance.csv").query("split == 'test' and metric == 'ndcg' and k == 10").set_index("tokenizer")
    assert sig.loc["rqkmeans-keep", "reference"] == "rqkmeans-suffix" and sig.loc["tiger-keep", "reference"] == "tiger-suffix"
    row = next(line for line in text.split("## Ablation")[1].splitlines() if line.startswith("| rqkmeans-keep"))
    assert f"{100 * sig.loc['rqkmeans-keep', 'rel_diff']:+.1f}% vs rqkmeans-suffix" in row
    assert "against **each row's own reference (tiger-suffix, rqkmeans-suffix)**" in text
