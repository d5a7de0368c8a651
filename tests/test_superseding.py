"""`bench supersede`: a finished unit or trial leaves the results with its figures and reason
in superseded.csv, the report lists it, and a rerun of the same command trains it again."""

import json
import shutil

import pandas as pd
import pytest
from click.testing import CliRunner

from bench.cli import main
from conftest import TINY_SETS, set_args

TINY = set_args(TINY_SETS)


def invoke(args):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return result


def run_args(out):
    return ["run", "--tokenizers", "id", "--out", str(out), "--seeds", "0", "--device", "cpu", *TINY]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("superseding") / "run"
    invoke(run_args(out))
    return out


def test_a_superseded_unit_is_listed_with_its_figures_and_trained_again(finished_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    run = run_args(out)
    unit = out / "units" / "id-seed0"
    metrics = pd.read_csv(unit / "metrics.csv").query("split == 'test' and metric == 'ndcg' and k == 10")
    codes = (out / "codes" / "id-seed0.index.json").read_bytes()
    done = json.loads((unit / "done").read_text())

    invoke(["supersede", str(out), "id-seed0", "--why", "an earlier stopping rule"])
    row = pd.read_csv(out / "superseded.csv").iloc[0]
    assert (row["tokenizer"], row["seed"], row["why"]) == ("id", 0, "an earlier stopping rule")
    assert row["test_ndcg@10"] == metrics["value"].iloc[0]
    assert (row["epochs"], row["best_epoch"]) == (done["epochs"], done["best_epoch"])
    assert not unit.exists() and (out / "codes" / "id-seed0.index.json").read_bytes() == codes  # codes kept
    assert "id" not in set(pd.read_csv(out / "metrics.csv")["tokenizer"])  # merged without it

    others = {p: p.stat().st_mtime_ns for p in (out / "units").glob("*/done")}
    rerun = invoke(run)
    assert "id seed 0: done already" not in rerun.output
    assert others and all(p.stat().st_mtime_ns == t for p, t in others.items())  # the other units were not redone
    assert (unit / "done").exists()
    report = (out / "report.md").read_text()
    assert "Set aside (`bench supersede`" in report and "an earlier stopping rule" in report


def test_supersede_refuses_what_it_cannot_find_in_one_line(finished_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    for names, why, message in ((["id-seed7"], "x", "not a finished unit"), (["id"], "x", "not a unit name"),
                                (["id-seed0"], " ", "--why must say")):
        result = CliRunner().invoke(main, ["supersede", str(out), *names, "--why", why])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(main, ["supersede", str(tmp_path), "id-seed0", "--why", "x"])
    assert result.exit_code == 2 and "neither a run folder" in result.output
    (out / "superseded.csv").write_text("nothing,useful\n1,2\n")
    result = CliRunner().invoke(main, ["report", str(out)])
    assert result.exit_code == 2 and "superseded.csv: not a list of superseded units" in result.output


def test_setting_every_unit_aside_leaves_no_row_of_them_in_the_merged_files(finished_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    invoke(["supersede", str(out), "id-seed0", "popularity-seed0", "sasrec-seed0", "--why", "all of them"])
    assert len(pd.read_csv(out / "superseded.csv")) == 3
    assert all(pd.read_csv(out / name).empty for name in ("metrics.csv", "per_user.csv", "history.csv"))


def test_a_superseded_trial_no_longer_counts_and_runs_again(tmp_path):
    out = tmp_path / "tune"
    tune = ["tune", "--tokenizers", "id", "--space", "recipe.lr=0.001,0.003", "--out", str(out), "--device", "cpu",
            *TINY]
    invoke(tune)
    first = pd.read_csv(out / "tuning.csv")
    assert len(first) == 2
    lr3 = first[first["settings"].str.contains("0.003")].iloc[0]

    invoke(["supersede", str(out), f"id:{lr3['trial']}", "--why", "trained under an earlier rule"])
    row = pd.read_csv(out / "superseded.csv").iloc[0]
    assert (row["tokenizer"], row["trial"], row["valid_ndcg@10"]) == ("id", lr3["trial"], lr3["valid_ndcg@10"])
    assert len(pd.read_csv(out / "tuning.csv")) == 1
    assert json.loads((out / "tuned.json").read_text())["chosen"]["id"]["complete"] is False
    result = CliRunner().invoke(main, ["supersede", str(out), f"id:{lr3['trial']}", "--why", "again"])
    assert result.exit_code == 2 and "already in superseded.csv" in result.output

    invoke(tune)
    again = pd.read_csv(out / "tuning.csv")
    assert len(again) == 2 and again["trial"].max() > first["trial"].max()  # a new trial of the same settings
    assert sorted(again["settings"]) == sorted(first["settings"])
    assert json.loads((out / "tuned.json").read_text())["chosen"]["id"]["complete"] is True
