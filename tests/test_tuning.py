"""bench tune (DESIGN 7b): settings chosen on validation only, never on test; one search per
folder, resumed trial by trial; tuned settings checked against the run that takes them."""

import dataclasses
import json

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from bench import runner as runner_module
from bench.cli import main
from bench.config import preset_config
from bench.errors import BenchError
from bench.stage_clock import machine_name
from bench.tuning import load_tuned, summary_table, tune
from conftest import TINY_SETS as TINY


# -- nothing chosen on test ---------------------------------------------------------------------
def test_tuning_never_sees_the_test_split(tmp_path, monkeypatch):
    """Changing every user's test item changes nothing in tuning.csv (but the times), and no
    trial scores a test user."""
    config = preset_config("quick", TINY, dataset="synthetic", tokenizers=["id"], device="cpu")
    space = {"recipe.lr": [1e-3, 3e-3]}
    first = pd.read_csv(tune(config, space, tmp_path / "a", log=lambda m: None).parent / "tuning.csv")

    real = runner_module.load_dataset

    def other_test_items(*args, **kwargs):
        data = real(*args, **kwargs)
        data.sequences = [s[:-1] + [(s[-1] + 7) % data.n_items] for s in data.sequences]
        return data

    monkeypatch.setattr(runner_module, "load_dataset", other_test_items)
    second = pd.read_csv(tune(config, space, tmp_path / "b", log=lambda m: None).parent / "tuning.csv")
    assert len(first) == 2
    pd.testing.assert_frame_equal(first.drop(columns=["seconds", "cpu_seconds"]), second.drop(columns=["seconds", "cpu_seconds"]))
    for trial in (tmp_path / "a" / "trials").iterdir():
        per_user = pd.read_csv(trial / "per_user.csv")
        assert set(per_user["split"]) == {"valid"}
        assert json.loads((trial / "config.json").read_text())["data"]["n_test"] == 0


def test_tuned_settings_become_each_tokenizers_recipe_and_are_checked(tmp_path):
    config = preset_config("quick", TINY, dataset="synthetic", tokenizers=["id"], device="cpu")
    path = tune(config, {"recipe.weight_decay": [0.0, 0.05]}, tmp_path / "t", log=lambda m: None)
    tuned = json.loads(path.read_text())
    best = tuned["chosen"]["id"]
    frame = pd.read_csv(tmp_path / "t" / "tuning.csv")
    assert best["valid_ndcg@10"] == frame["valid_ndcg@10"].max()  # the best on validation is chosen
    # the cost: CPU time of every trial (all measured here), summed, next to wall time
    assert (frame["cpu_seconds"] > 0).all() and best["cpu_minutes"] == round(frame["cpu_seconds"].sum() / 60, 1)
    assert best["wall_minutes"] == round(frame["seconds"].sum() / 60, 1)
    assert (frame["machine"] == machine_name(torch.device("cpu"))).all()  # what the cost was measured on
    summary = summary_table(path).set_index("tokenizer")
    assert summary.loc["id", "CPU minutes"] == best["cpu_minutes"]
    run = dataclasses.replace(config, tuned=load_tuned(tmp_path / "t", config))
    [variant] = runner_module.variants(run, ["id"])
    assert variant.recipe == {"weight_decay": best["settings"]["recipe.weight_decay"]}
    with pytest.raises(BenchError, match="no tuned settings for text"):
        runner_module.variants(run, ["text"])
    other = preset_config("cpu", dataset="synthetic", tokenizers=["id"])
    with pytest.raises(BenchError, match="tuned with preset"):
        load_tuned(tmp_path / "t", other)


def test_bench_tune_cli_refuses_test_keys_and_writes_its_files(tmp_path):
    args = ["tune", "--tokenizers", "id", "--out", str(tmp_path / "t"), "--device", "cpu"]
    sets = [x for k, v in TINY.items() for x in ("--set", f"{k}={v}")]
    result = CliRunner().invoke(main, [*args, "--space", "t5.d_model=16,32", *sets])
    assert result.exit_code == 2 and "only recipe settings" in result.output
    result = CliRunner().invoke(main, [*args, "--space", "recipe.lr=0.001,0.002", *sets])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "t" / "tuning.csv").is_file() and (tmp_path / "t" / "tuned.json").is_file()
    assert "best valid NDCG@10" in result.output and "2 of 2" in result.output  # the summary table
    # each trial's line shows what it scored (validation), not an unscored test split as nan
    assert "id seed 0: valid Recall@10" in result.output and "Recall@10 nan" not in result.output



def test_runs_sharing_a_folder_may_name_different_tuned_tokenizers_but_not_other_choices():
    from bench.run_files import tuning_differences

    search = {"space": {"recipe.lr": [1, 2]}, "seed": 0}
    a = {"search": search, "chosen": {"id": {"settings": {"recipe.lr": 1}}}}
    b = {"search": search, "chosen": {"text": {"settings": {"recipe.lr": 2}}}}
    assert tuning_differences(a, b) == []  # one lane runs id, the other text: fine
    c = {"search": search, "chosen": {"id": {"settings": {"recipe.lr": 2}}}}
    assert tuning_differences(a, c)[0].startswith('id: {"recipe.lr": 1} there, {"recipe.lr": 2} here')
    assert tuning_differences(a, c, labels={"id", "text"})  # the folder has units of id: refused
    assert tuning_differences(a, c, labels={"id-keep"})  # or of one of its variants
    assert tuning_differences(a, c, labels={"text", "idx"}) == []  # none trained with the old choice: it gives way
    assert tuning_differences(a, {"search": {**search, "seed": 1}, "chosen": {}}) == ["search seed: 0 there, 1 here"]
    assert tuning_differences(a, None) == ["--tuned given there"]


def test_a_failed_or_killed_trial_is_run_again_on_the_next_call(tmp_path, monkeypatch):
    import bench.tuning as tuning_module

    config = preset_config("quick", TINY, dataset="synthetic", tokenizers=["id"], device="cpu")
    real = tuning_module.run_trial
    calls = []

    def flaky(trial_config, log):
        calls.append(trial_config.recipe.lr)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed during the second trial
        return real(trial_config, log)

    monkeypatch.setattr(tuning_module, "run_trial", flaky)
    with pytest.raises(KeyboardInterrupt):
        tune(config, {"recipe.lr": [1e-3, 3e-3]}, tmp_path / "t", log=lambda m: None)
    tune(config, {"recipe.lr": [1e-3, 3e-3]}, tmp_path / "t", log=lambda m: None)
    frame = pd.read_csv(tmp_path / "t" / "tuning.csv")
    assert sorted(json.loads(s)["recipe.lr"] for s in frame["settings"]) == [1e-3, 3e-3]  # each grid point once
    assert calls[1] == calls[2]  # the killed settings ran again
    journal = (tmp_path / "t" / "optuna.journal").read_bytes()
    tune(config, {"recipe.lr": [1e-3, 3e-3]}, tmp_path / "t", log=lambda m: None)
    assert len(calls) == 3  # a finished search trains nothing on a rerun
    assert (tmp_path / "t" / "optuna.journal").read_bytes() == journal  # and writes nothing to its journal


def test_a_tuning_folder_holds_one_search_and_tuned_settings_need_the_same_base(tmp_path):
    config = preset_config("quick", TINY, dataset="synthetic", tokenizers=["id"], device="cpu")
    tune(config, {"recipe.lr": [1e-3, 3e-3]}, tmp_path / "t", log=lambda m: None)
    other = preset_config("quick", {**TINY, "recipe.patience": "5"}, dataset="synthetic", tokenizers=["id"], device="cpu")
    with pytest.raises(BenchError, match=r"another recipe \(patience: 2 there, 5 here\)"):
        tune(other, {"recipe.lr": [1e-3, 3e-3]}, tmp_path / "t", log=lambda m: None)
    with pytest.raises(BenchError, match=r"other recipe settings than this run's \(patience: 2 there, 5 here\)"):
        load_tuned(tmp_path / "t", other)


def test_a_search_stopped_part_way_has_the_summary_of_its_finished_trials(tmp_path, monkeypatch):
    import bench.tuning as tuning

    evaluate, calls = tuning._evaluate, []

    def stopped_at_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the session ends during the second trial
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(tuning, "_evaluate", stopped_at_the_second)
    config = preset_config("quick", TINY, dataset="synthetic", tokenizers=["id"], device="cpu")
    with pytest.raises(KeyboardInterrupt):
        tune(config, {"recipe.lr": [1e-3, 3e-3]}, tmp_path / "t", log=lambda m: None)
    assert len(pd.read_csv(tmp_path / "t" / "tuning.csv")) == 1
    chosen = json.loads((tmp_path / "t" / "tuned.json").read_text())["chosen"]["id"]
    assert chosen["trials"] == 1 and chosen["complete"] is False


def test_a_search_saved_before_a_field_or_tokenizer_existed_is_still_the_same_search(tmp_path):
    """A recipe field added later (at its default) or a new tokenizer does not make another
    search, so a long tuning run resumes across versions; a removed field does."""
    config = preset_config("quick", TINY, dataset="synthetic", tokenizers=["id"], device="cpu")
    tune(config, {"recipe.lr": [1e-3, 3e-3]}, tmp_path / "t", log=lambda m: None)
    for name in ("search.json", "tuned.json"):
        path = tmp_path / "t" / name
        saved = json.loads(path.read_text())
        search = saved.get("search", saved)
        del search["base"]["recipe"]["length_penalty"]  # as if saved before the field existed
        del search["base"]["tokenizer_options"]["tiger"]
        path.write_text(json.dumps(saved))
    tune(config, {"recipe.lr": [1e-3, 3e-3]}, tmp_path / "t", log=lambda m: None)  # resumes: no error
    assert load_tuned(tmp_path / "t", config)["chosen"]
    off_default = preset_config("quick", {**TINY, "recipe.length_penalty": "0"}, dataset="synthetic",
                                tokenizers=["id"], device="cpu")
    with pytest.raises(BenchError, match="other recipe settings"):
        load_tuned(tmp_path / "t", off_default)
    search = json.loads((tmp_path / "t" / "search.json").read_text())
    search["base"]["recipe"]["retired_field"] = 1
    (tmp_path / "t" / "search.json").write_text(json.dumps(search))
    with pytest.raises(BenchError, match="another recipe"):
        tune(config, {"recipe.lr": [1e-3, 3e-3]}, tmp_path / "t", log=lambda m: None)


def test_the_report_says_how_each_setting_was_chosen():
    from bench.reporting.protocol import settings_rows

    config = {"labels": ["id", "text"], "recipe": {"lr": 0.001, "weight_decay": 0.01},
              "tuned": {"search": {"space": {"recipe.lr": [0.001, 0.003]}, "seed": 0, "sampler": "grid"},
                        "chosen": {"id": {"settings": {"recipe.lr": 0.003}, "trials": 2, "valid_ndcg@10": 0.05}}}}
    rows = {r["row"]: r for r in settings_rows(config)}
    assert rows["id"]["settings"] == "lr 0.003, weight_decay 0.01"
    assert rows["id"]["how chosen"].startswith("lr: bench tune on validation") and "weight_decay: a priori" in rows["id"]["how chosen"]
    assert rows["text"]["how chosen"] == "lr, weight_decay: a priori (the preset's value)"


def test_tuning_trials_as_jobs_give_the_trials_of_one_process(tmp_path):
    """`bench tune --jobs 2`: every grid point of every tokenizer trained as one dispatch of
    worker processes; the studies then record exactly what one process would have chosen."""
    from bench.executor import Dispatch

    config = preset_config("quick", TINY, dataset="synthetic", tokenizers=["id", "random"], device="cpu")
    space = {"recipe.lr": [1e-3]}  # one grid point per tokenizer: still two trials as jobs
    logs: list[str] = []
    one = pd.read_csv(tune(config, space, tmp_path / "one", log=lambda m: None).parent / "tuning.csv")
    jobs = pd.read_csv(tune(config, space, tmp_path / "jobs", log=logs.append,
                            dispatch=Dispatch("local", jobs=2, threads_per_job=1)).parent / "tuning.csv")
    assert any("2 units as jobs" in line for line in logs)
    cols = ["tokenizer", "settings", "valid_ndcg@10", "best_epoch", "epochs"]
    key = ["tokenizer", "settings"]
    pd.testing.assert_frame_equal(one[cols].sort_values(key, ignore_index=True),
                                  jobs[cols].sort_values(key, ignore_index=True))
    chosen = [{k: {"settings": v["settings"], "valid": v["valid_ndcg@10"]}
               for k, v in json.loads((tmp_path / run / "tuned.json").read_text())["chosen"].items()}
              for run in ("one", "jobs")]
    assert chosen[0] == chosen[1] and set(chosen[0]) == {"id", "random"}
    with pytest.raises(BenchError, match="only the whole grid"):
        tune(config, space, tmp_path / "tpe", sampler="tpe", trials=2, dispatch=Dispatch("local", jobs=2))


def test_every_failed_trial_runs_again_in_one_call(tmp_path):
    """Trials failed after the whole grid was visited (e.g. invalidated: trained on codes that
    were not the search's) all run again in one call, though the grid sampler stops its
    study once every grid point has a finished trial."""
    config = preset_config("quick", TINY, dataset="synthetic", tokenizers=["id"], device="cpu")
    out = tmp_path / "t"
    tune(config, {"recipe.lr": [1e-3, 3e-3]}, out, log=lambda m: None)
    journal = out / "optuna.journal"
    text = journal.read_text()
    assert text.count('"state":1,') == 2  # the two trials' completions (COMPLETE is 1, FAIL 3)
    journal.write_text(text.replace('"state":1,', '"state":3,'))
    logs: list[str] = []
    tune(config, {"recipe.lr": [1e-3, 3e-3]}, out, log=logs.append)
    assert sum("valid NDCG@10" in line for line in logs) == 2
    assert sorted(json.loads(s)["recipe.lr"] for s in pd.read_csv(out / "tuning.csv")["settings"]) == [1e-3, 3e-3]
