"""`bench run --tuned` and ablations with tuned settings: the unit of the tuning seed is the
chosen trial's model whenever that trial trained exactly what the unit would, under any
label; another seed, or other settings, train anew."""

import json

import pandas as pd
import pytest
from click.testing import CliRunner
from filelock import FileLock

from bench.cli import main
from bench.config import preset_config
from bench.errors import BenchError
from bench.runner import Run
from bench.unit_reuse import same_training, training_settings
from bench.tuning import load_tuned, settings_hash, tune
from bench.variants import Variant

from test_protocol import TINY


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    out = tmp_path_factory.mktemp("tuned") / "t"
    config = preset_config("quick", TINY, dataset="synthetic", tokenizers=["id"], device="cpu")
    tune(config, {"recipe.lr": [1e-3, 3e-3]}, out, log=lambda m: None)
    return out


def _done(out, label, seed=0):
    return json.loads((out / "units" / f"{label}-seed{seed}" / "done").read_text())


def test_run_with_tuned_settings_evaluates_the_chosen_trials_model_for_the_tuning_seed(tuned, tmp_path):
    """Seed 0 is the chosen trial's model (same settings and seed: no retraining, the same
    validation scores); another seed, or other settings, train anew."""
    sets = [x for k, v in TINY.items() for x in ("--set", f"{k}={v}")]
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["run", "--tokenizers", "id", "--out", str(out), "--device", "cpu", "--seeds", "0,1",
                                       "--tuned", str(tuned), *sets])
    assert result.exit_code == 0, result.output
    chosen = json.loads((tuned / "tuned.json").read_text())["chosen"]["id"]
    assert _done(out, "id")["from_tuning_trial"].endswith(f"id-{settings_hash(chosen['settings'])}")
    assert "from_tuning_trial" not in _done(out, "id", seed=1)
    metrics = pd.read_csv(out / "metrics.csv").query("tokenizer == 'id' and seed == 0 and split == 'valid' and metric == 'ndcg' and k == 10")
    assert metrics["value"].iloc[0] == pytest.approx(chosen["valid_ndcg@10"], abs=1e-12)
    other = tmp_path / "other"
    result = CliRunner().invoke(main, ["run", "--tokenizers", "id", "--out", str(other), "--device", "cpu",
                                       "--tuned", str(tuned), *sets, "--set", "recipe.tau=0.5"])
    assert result.exit_code == 2 and "tuned with other recipe settings" in result.output  # not what was tuned


def test_an_ablation_row_that_changes_nothing_reuses_the_trial_under_its_own_label(tuned, tmp_path):
    """LETTER's tau-1 row trains what the tuning trial trained: its tuning-seed unit is that
    model; a row that changes the recipe trains, and so does a row marked not reusable (a
    collision table's, whose policies must share one quantiser fitted in their folder)."""
    config = preset_config("quick", TINY, dataset="synthetic", tokenizers=["id"], device="cpu",
                           out=str(tmp_path / "ablation"), seeds=[0])
    config.tuned = load_tuned(tuned, config)
    chosen = config.tuned["chosen"]["id"]
    config.variants = [{"label": "id-same", "tokenizer": "id", "options": {}, "recipe": {"tau": 1.0}},  # the preset's
                       {"label": "id-tau", "tokenizer": "id", "options": {}, "recipe": {"tau": 0.5}},
                       {"label": "id-here", "tokenizer": "id", "options": {}, "recipe": {}, "reusable": False}]
    config.reference = "id-same"
    logs = []
    out = Run(config, log=logs.append).run()
    assert _done(out, "id-same")["from_tuning_trial"].endswith(f"id-{settings_hash(chosen['settings'])}")
    assert "from_tuning_trial" not in _done(out, "id-tau")
    assert "from_tuning_trial" not in _done(out, "id-here")  # a collision table's row: always fitted here
    assert not any("trained under other settings" in line for line in logs)  # expected for an ablation row
    valid = pd.read_csv(out / "metrics.csv").query("split == 'valid' and metric == 'ndcg' and k == 10")
    assert valid.query("tokenizer == 'id-same'")["value"].iloc[0] == pytest.approx(chosen["valid_ndcg@10"], abs=1e-12)


def test_tokenizer_options_spelled_out_at_their_default_count_as_the_same_training(tuned, tmp_path):
    config = preset_config("quick", TINY, dataset="synthetic", tokenizers=["id"], device="cpu")
    saved = json.loads((next((tuned / "trials").glob("id-*")) / "config.json").read_text())
    saved["tokenizers"], saved["tokenizer_options"] = ["tiger"], {"tiger": {"epochs": 5}}
    fingerprint = saved["data"]["fingerprint"]  # saved: a tiger trial's config (its options leave collisions out)
    recipe = {"lr": saved["recipe"]["lr"]}
    same = Variant("tiger-suffix", "tiger", {"epochs": 5, "collisions": "suffix"}, recipe)
    assert same_training(saved, training_settings(config, same, 0, fingerprint))
    other = Variant("tiger-keep", "tiger", {"epochs": 5, "collisions": "keep"}, recipe)
    assert not same_training(saved, training_settings(config, other, 0, fingerprint))


def test_a_trial_whose_unit_records_other_resolved_options_is_not_reused(tuned, tmp_path):
    # a default changed since the trial trained: its config.json cannot show it, its unit's training.json does
    import shutil

    copy = tmp_path / "tuned"
    shutil.copytree(tuned, copy)
    chosen = json.loads((copy / "tuned.json").read_text())["chosen"]["id"]
    record = copy / "trials" / f"id-{settings_hash(chosen['settings'])}" / "units" / "id-seed0" / "training.json"
    settings = json.loads(record.read_text())
    assert settings["resolved_options"] == {"id": {}}
    settings["resolved_options"] = {"id": {"a_default_since_changed": 1}}
    record.write_text(json.dumps(settings))
    sets = [x for k, v in TINY.items() for x in ("--set", f"{k}={v}")]
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["run", "--tokenizers", "id", "--out", str(out), "--device", "cpu",
                                       "--tuned", str(copy), *sets])
    assert result.exit_code == 0, result.output
    assert "from_tuning_trial" not in _done(out, "id")


def test_a_study_another_process_holds_is_skipped_with_a_one_line_error(tmp_path):
    out = tmp_path / "t"
    (out / "locks").mkdir(parents=True)
    config = preset_config("quick", TINY, dataset="synthetic", tokenizers=["id"], device="cpu")
    logged = []
    with FileLock(str(out / "locks" / "id.lock")):  # the other process, tuning id now
        with pytest.raises(BenchError, match="another process holds the study of id; rerun"):
            tune(config, {"recipe.lr": [1e-3, 3e-3]}, out, log=logged.append)
    assert any(m.startswith("id: another process") for m in logged)
    assert not (out / "trials").exists()  # nothing trained here
