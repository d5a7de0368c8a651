"""End to end: `bench run` on a tiny synthetic set, resume, ablation config, registries."""

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from bench.cli import main
from bench.config import preset_config
from bench.datasets import SyntheticSpec, leave_one_out, make_synthetic
from bench.tokenizers import TOKENIZERS, FitContext, make_tokenizer

from conftest import shared_path

TINY = ["--set", "synthetic.n_items=60", "--set", "synthetic.n_users=80", "--set", "recipe.epochs=2",
        "--set", "recipe.valid_users=20", "--set", "t5.d_model=32", "--set", "t5.d_ff=64", "--set", "t5.num_heads=2",
        "--set", "t5.d_kv=16", "--set", "t5.num_layers=1", "--set", "t5.num_decoder_layers=1",
        "--set", "sasrec.epochs=1", "--device", "cpu"]


def invoke(args):
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    return result


def test_bench_run_end_to_end_and_resume(tmp_path):
    out = tmp_path / "run"
    result = invoke(["run", "--tokenizers", "id", "--out", str(out), "--seeds", "0,1", *TINY])
    assert result.exit_code == 0, result.output
    metrics = pd.read_csv(out / "metrics.csv")
    assert set(metrics.columns) == {"dataset", "tokenizer", "seed", "split", "metric", "k", "value"}
    assert set(metrics["tokenizer"]) == {"id", "popularity", "sasrec"}
    assert set(metrics["seed"]) == {0, 1} and set(metrics["split"]) == {"valid", "test"}
    assert metrics["value"].between(0, 1).all()
    per_user = pd.read_csv(out / "per_user.csv", dtype={"user": str})
    n_users = 80
    assert len(per_user.query("tokenizer == 'id' and seed == 0 and split == 'test'")) == n_users
    rankings = pd.read_csv(out / "rankings.csv", dtype={"user": str, "item": str})
    first = rankings.query("tokenizer == 'id' and seed == 0 and split == 'test'")
    assert first.groupby("user").size().max() == 20
    assert first["item"].astype(int).between(0, 59).all()
    # per-user recall@20 agrees with the rankings file
    test = make_synthetic(SyntheticSpec(n_items=60, n_users=80))
    split = leave_one_out(test)
    targets = {test.user_ids[u]: test.item_ids[t] for u, t in zip(split.test.users, split.test.targets)}
    hits = first.groupby("user")["item"].apply(lambda s: targets[s.name] in set(s)).astype(float)
    got = per_user.query("tokenizer == 'id' and seed == 0 and split == 'test'").set_index("user")["recall@20"]
    assert (hits.sort_index() == got.sort_index()).all()
    index = json.loads((out / "codes" / "id-seed0.index.json").read_text())
    assert index["5"] == ["<item_5>"]
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["n_items"] == 60 and config["versions"]["torch"]
    assert (out / "report.md").exists()

    # rerun: every unit is done, nothing is retrained, files are the same
    before = (out / "metrics.csv").read_text()
    result = invoke(["run", "--tokenizers", "id", "--out", str(out), "--seeds", "0,1", *TINY])
    assert result.exit_code == 0 and "done already" in result.output
    assert (out / "metrics.csv").read_text() == before

    # a changed recipe may not reuse the folder
    result = CliRunner().invoke(main, ["run", "--tokenizers", "id", "--out", str(out), *TINY, "--set", "recipe.lr=0.1"])
    assert result.exit_code == 2 and "another recipe" in result.output and "0.1 here" in result.output


def test_setting_differences_name_each_field_and_accept_a_new_field_at_its_default():
    from bench.config import same_settings, setting_differences

    saved = {"lr": 0.001, "patience": 4}  # written before min_epochs existed
    assert setting_differences("recipe", saved, {"lr": 0.001, "patience": 4, "min_epochs": 0}) == []
    assert setting_differences("recipe", saved, {"lr": 0.001, "patience": 4, "min_epochs": 10}) == [
        "min_epochs: absent (default 0) there, 10 here"]
    assert setting_differences("recipe", saved, {"lr": 0.003, "patience": 4}) == ["lr: 0.001 there, 0.003 here"]
    assert setting_differences("recipe", {**saved, "gone": 1}, saved) == ["gone: 1 there, no longer a setting"]
    assert setting_differences("tokenizer_options", {"letter": {"alpha": 0.02}, "id": {}},
                               {"letter": {"alpha": 0.0}}) == ["letter.alpha: 0.02 there, 0.0 here"]
    assert setting_differences("preset", "cpu", "quick") == ['"cpu" there, "quick" here']
    assert same_settings("recipe", saved, {"lr": 0.001, "patience": 4, "min_epochs": 0})


def test_every_registered_tokenizer_can_be_built():
    for name, cls in TOKENIZERS.items():
        tok = make_tokenizer(f"{name}:x" if cls.takes_argument else name)
        assert tok.name == name


def test_precomputed_finds_the_25_colliding_items_of_instruments():
    from bench.datasets import load_dataset

    folder = shared_path("letter", "Instruments")
    data = load_dataset(f"letter:{folder}")
    split = leave_one_out(data)
    for policy, distinct in (("keep", 9897), ("suffix", 9922)):
        tok = make_tokenizer(f"precomputed:{folder / 'Instruments.index.json'}", {"collisions": policy})
        tok.fit(FitContext(data, split, 0, log=lambda m: None))
        assert tok.n_collisions == 25
        assert len(set(tok.codes)) == distinct


def test_ablation_config_has_one_row_per_loss():
    from bench.ablation import letter_ablation

    config = letter_ablation(preset_config("quick"))
    labels = [v["label"] for v in config.variants]
    assert labels == ["letter", "letter-no-cf", "letter-no-div", "letter-semantic", "letter-tau1", "letter-no-recon"]
    by = {v["label"]: v for v in config.variants}
    assert by["letter-no-cf"]["options"]["alpha"] == 0 and by["letter-semantic"]["options"]["beta"] == 0
    assert by["letter-tau1"]["recipe"]["tau"] == 1.0 and by["letter"]["recipe"]["tau"] == 0.7
    assert by["letter-tau1"]["options"] == by["letter"]["options"]  # same codes, only the loss differs
    assert config.reference == "letter"


@pytest.mark.parametrize("args, message", [
    (["--tokenizers", "nope"], "unknown tokenizer"),
    (["--dataset", "nope"], "unknown data set"),
    (["--preset", "huge"], "unknown preset"),
    (["--seeds", "a,b"], "--seeds"),
    (["--set", "recipe.lr=-1"], "lr must be > 0"),
    (["--set", "recipe.beam=5"], "beam must be >="),
    (["--set", "recipe.nope=1"], "unknown option"),
    (["--set", "letter.alpha=x"], "not a valid float"),
    (["--tokenizers", "precomputed"], "needs an argument"),
    (["--device", "cuda"], "no CUDA device"),
])
def test_bad_options_are_one_line_errors(args, message, tmp_path):
    result = CliRunner().invoke(main, ["run", "--out", str(tmp_path / "r"), *args])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_codes_fit_writes_an_index_and_prints_level_statistics(tmp_path):
    out = tmp_path / "id.index.json"
    result = invoke(["codes", "fit", "id", "--set", "synthetic.n_items=30", "--set", "synthetic.n_users=40",
                     "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["3"] == ["<item_3>"]
    assert "normalized_entropy" in result.output and "items; colliding items: 0 before any numbering suffix" in result.output


def test_a_run_reads_histories_under_its_budget(tmp_path):
    result = invoke(["run", "--tokenizers", "text", "--out", str(tmp_path / "r"), *TINY,
                     "--set", "recipe.max_input_tokens=12", "--set", "recipe.epochs=1"])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("text: reads "))
    assert line.endswith("under max_input_tokens 12")
    read, available = (float(v) for v in line.split()[2:5:2])  # "reads R of A history items"
    assert 1 <= read < available
