"""The protocol (DESIGN 7b): nothing chosen on test, equal budgets, stopping by patience
recorded, the recipe's tau and best-state restore, the temporal split, external CF named."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from bench import runner as runner_module
from bench import training
from bench.backbones import Ranked, T5Backbone
from bench.backbones.base import ce_loss
from bench.cli import main
from bench.config import Recipe, T5Size, default_tokenizer_options, preset_config
from bench.datasets import Dataset, SyntheticSpec, leave_one_out, make_synthetic, temporal_split
from bench.errors import BenchError
from bench.reporting.protocol import protocol_section, stopping_table
from bench.stage_clock import machine_name
from bench.tokenizers import FitContext, make_tokenizer
from bench.tuning import load_tuned, summary_table, tune
from conftest import TINY_SETS as TINY

TINY_T5 = T5Size(num_layers=1, num_decoder_layers=1, d_model=32, d_ff=64, num_heads=2, d_kv=16, dropout=0.0)


def _id_backbone(n_items: int = 30):
    data = make_synthetic(SyntheticSpec(n_items=n_items, n_users=40, seed=1))
    split = leave_one_out(data)
    tok = make_tokenizer("id")
    tok.fit(FitContext(data, split, 0, log=lambda m: None))
    torch.manual_seed(0)
    return T5Backbone(tok, TINY_T5), split


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


# -- equal budgets --------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", ["quick", "cpu", "paper"])
def test_rqvae_tokenizers_train_with_one_budget(preset):
    options = default_tokenizer_options(preset)
    tiger = make_tokenizer("tiger", options["tiger"]).options
    letter = make_tokenizer("letter", options["letter"]).options
    for name in ("epochs", "batch_size", "lr", "weight_decay", "select", "eval_every", "codebook_size", "latent_dim"):
        assert getattr(tiger, name) == getattr(letter, name), name


@pytest.mark.parametrize("preset", ["quick", "cpu"])
def test_presets_leave_stopping_to_patience_not_the_cap(preset):
    """quick's old cap of 3 cosine epochs ended every unit while its validation score still rose;
    a flat rate and a cap of many patience windows leave the stop to patience."""
    recipe = preset_config(preset).recipe
    assert recipe.schedule == "constant" and recipe.stop_on == "ndcg"
    assert recipe.epochs >= 10 * recipe.patience * recipe.eval_every


# -- the recipe reaches training ------------------------------------------------------------------
def test_tau_reaches_the_training_loss(monkeypatch):
    backbone, split = _id_backbone()
    batch = backbone.collate(split.train.histories[:8], split.train.targets[:8].tolist())
    logits = backbone.model(**{k: v for k, v in batch.items()}).logits
    assert backbone.loss(batch, 0.5).item() == pytest.approx(ce_loss(logits, batch["labels"], 0.5).item(), rel=1e-5)
    assert backbone.loss(batch, 0.5).item() != pytest.approx(backbone.loss(batch, 1.0).item(), rel=1e-3)
    seen = []
    real = T5Backbone.loss
    monkeypatch.setattr(T5Backbone, "loss", lambda self, b, tau=1.0: (seen.append(tau), real(self, b, tau))[1])
    recipe = Recipe(epochs=1, batch_size=64, tau=0.7, valid_users=10)
    training.train(backbone, split.train, split.valid, recipe, 0, log=lambda m: None)
    assert seen and set(seen) == {0.7}


def _scripted_validation(monkeypatch, backbone, ndcgs):
    """Validation returns NDCG@10 = ndcgs[i] at its i-th call (a hit at rank 1 for that share
    of users); the backbone's weights at each call are kept."""
    states = []

    def fake_evaluate(bb, trie, samples, recipe, **kwargs):
        states.append({k: v.clone() for k, v in bb.state_dict().items()})
        share = ndcgs[len(states) - 1]
        items = np.full((len(samples), 20), -1, dtype=np.int64)
        hit = np.arange(len(samples)) < round(share * len(samples))
        items[hit, 0] = samples.targets[hit]
        return Ranked(items, np.zeros(items.shape), 0)

    monkeypatch.setattr(training, "evaluate", fake_evaluate)
    return states


def test_training_restores_the_best_epoch_and_records_patience(monkeypatch):
    backbone, split = _id_backbone()
    valid = split.valid.subset(np.arange(10))
    states = _scripted_validation(monkeypatch, backbone, [0.1, 0.3, 0.2, 0.1, 0.5])
    result = training.train(backbone, split.train, valid, Recipe(epochs=10, patience=2, batch_size=64), 0,
                            log=lambda m: None)
    assert result.stopped_by == "patience" and result.best_epoch == 2 and len(result.history) == 4
    best = states[1]
    assert all(torch.equal(v, best[k]) for k, v in backbone.state_dict().items())
    assert not all(torch.equal(v, states[3][k]) for k, v in backbone.state_dict().items())  # not the last epoch's


def test_patience_cannot_stop_training_before_min_epochs(monkeypatch):
    """Validation dips for three evaluations after epoch 1: patience 2 alone stops at epoch 3;
    with min_epochs 5 training goes on, finds the better epoch 5 and stops two evaluations later."""
    backbone, split = _id_backbone()
    valid = split.valid.subset(np.arange(10))
    scores = [0.3, 0.1, 0.1, 0.1, 0.5, 0.2, 0.2, 0.2]
    _scripted_validation(monkeypatch, backbone, scores)
    early = training.train(backbone, split.train, valid, Recipe(epochs=10, patience=2, batch_size=64), 0,
                           log=lambda m: None)
    assert (early.stopped_by, early.best_epoch, len(early.history)) == ("patience", 1, 3)
    _scripted_validation(monkeypatch, backbone, scores)
    later = training.train(backbone, split.train, valid, Recipe(epochs=10, patience=2, min_epochs=5, batch_size=64),
                           0, log=lambda m: None)
    assert (later.stopped_by, later.best_epoch, len(later.history)) == ("patience", 5, 7)


def test_training_that_reaches_the_cap_says_so(monkeypatch):
    backbone, split = _id_backbone()
    _scripted_validation(monkeypatch, backbone, [0.1, 0.2, 0.3])
    logs = []
    result = training.train(backbone, split.train, split.valid.subset(np.arange(10)),
                            Recipe(epochs=3, patience=2, batch_size=64), 0, log=logs.append)
    assert result.stopped_by == "cap" and result.best_epoch == 3
    assert any("epoch cap" in m for m in logs)


def test_constant_schedule_keeps_the_rate_after_warmup_and_cosine_ends_at_zero():
    param = torch.nn.Parameter(torch.zeros(1))
    for schedule, last in (("constant", 1.0), ("cosine", 0.0)):
        opt = torch.optim.AdamW([param], lr=1.0)
        sched = training.make_scheduler(opt, Recipe(schedule=schedule, warmup_ratio=0.1), 100)
        rates = []
        for _ in range(100):
            rates.append(sched.get_last_lr()[0])
            opt.step()
            sched.step()
        assert rates[0] == 0.0 and rates[10] == pytest.approx(1.0)
        assert sched.get_last_lr()[0] == pytest.approx(last, abs=1e-9)
    with pytest.raises(BenchError, match="schedule"):
        preset_config("quick", {"recipe.schedule": "linear"})


def test_units_record_why_they_stopped_and_the_report_flags_the_cap(tmp_path):
    out = tmp_path / "run"
    sets = [x for k, v in TINY.items() for x in ("--set", f"{k}={v}")]
    result = CliRunner().invoke(main, ["run", "--tokenizers", "id", "--out", str(out), "--device", "cpu", *sets])
    assert result.exit_code == 0, result.output
    done = json.loads((out / "units" / "id-seed0" / "done").read_text())
    history = pd.read_csv(out / "history.csv")
    assert done["stopped_by"] in ("cap", "patience") and set(history["stopped_by"]) == {done["stopped_by"]}
    report = (out / "report.md").read_text()
    assert "## Protocol" in report and "a priori" in report
    if done["stopped_by"] == "cap":
        assert "CAP: not converged" in report and "stopped at the epoch cap" in report


def test_stopping_is_inferred_for_runs_that_did_not_record_it():
    history = pd.DataFrame({"tokenizer": ["a"] * 4 + ["b"] * 4, "seed": 0, "epoch": [1, 2, 3, 4] * 2,
                            "best_epoch": [4] * 4 + [2] * 4})
    table = stopping_table(history, {"epochs": 4, "patience": 2})
    assert table["stopped by"].tolist() == ["CAP: not converged (inferred)", "patience (inferred)"]


def test_the_report_states_the_minimum_number_of_epochs():
    history = pd.DataFrame({"tokenizer": ["a"] * 3, "seed": 0, "epoch": [1, 2, 3], "best_epoch": 1, "stopped_by": "patience"})
    section = lambda recipe: "\n".join(protocol_section({"data_options": {}, "recipe": recipe}, history, str))  # noqa: E731
    assert "patience 4 evaluations without a better validation NDCG@10, not before epoch 10, cap 40" in section(
        {"patience": 4, "min_epochs": 10, "epochs": 40})
    assert "not before epoch" not in section({"patience": 4, "epochs": 40})


# -- leakage ----------------------------------------------------------------------------------------
def test_shipped_cf_embeddings_are_named_external():
    lines = "\n".join(protocol_section({"data_options": {"cf_embeddings": "shipped"}, "recipe": {}}, None, str))
    assert "EXTERNAL" in lines
    lines = "\n".join(protocol_section({"data_options": {"cf_embeddings": "train"}, "recipe": {}}, None, str))
    assert "EXTERNAL" not in lines and "training split" in lines
    config = preset_config("quick", {"data.cf_embeddings": "shipped"}, tokenizers=["letter"], device="cpu")
    run = runner_module.Run(config, log=lambda m: None)
    with pytest.raises(BenchError, match="ships no CF embeddings"):
        run.prepare()


def _timed() -> Dataset:
    # times 1..10 spread over three users; cut-offs by interaction share
    seqs = [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    times = [[1, 2, 8, 10], [3, 4, 9], [5, 6, 7]]
    return Dataset("t", [str(i) for i in range(10)], ["a", "b", "c"], seqs, timestamps=times)


def test_temporal_split_keeps_the_future_out_of_training():
    split = temporal_split(_timed(), valid_share=0.4, test_share=0.2)
    # 10 interactions: t_valid = the time above 60 % (7), t_test = above 80 % (9)
    assert split.train_sequences == [[0, 1], [4, 5], [7, 8]]
    assert sorted(zip(split.valid.users.tolist(), split.valid.targets.tolist())) == [(0, 2), (2, 9)]
    assert sorted(zip(split.test.users.tolist(), split.test.targets.tolist())) == [(0, 3), (1, 6)]
    test_history = dict(zip(split.test.users.tolist(), split.test.histories))
    assert test_history[0] == [0, 1, 2] and test_history[1] == [4, 5]
    assert all(t not in (2, 3, 6, 9) for h in split.train.histories for t in h)  # no later item in training
    with pytest.raises(BenchError, match="needs timestamps"):
        temporal_split(make_synthetic(SyntheticSpec(n_items=20, n_users=10)))


def test_movielens_keeps_timestamps_for_the_temporal_split():
    from conftest import shared_path
    from bench.datasets import load_dataset

    data = load_dataset(f"ml-100k:{shared_path('ml-100k')}")
    assert all(t == sorted(t) for t in data.timestamps)
    split = temporal_split(data)
    n_train = sum(len(s) for s in split.train_sequences)
    assert n_train == pytest.approx(0.9 * data.n_interactions, rel=0.02)  # the first 90 % of the timeline
    # MovieLens users rate in bursts: few are active after the cut-offs (measured: 29 validation,
    # 75 test users of 943), the caveat the README states
    assert 20 <= len(split.valid) < 100 and 50 <= len(split.test) < 150


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
