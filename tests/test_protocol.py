"""The protocol (DESIGN 7b): equal budgets, stopping by patience recorded, the recipe's tau and
best-state restore, the temporal split, external CF named (tuning on validation: test_tuning.py)."""

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
from bench.config import Recipe, T5Size, default_tokenizer_options, preset_config, setting_differences
from bench.datasets import Dataset, SyntheticSpec, leave_one_out, make_synthetic, temporal_split
from bench.errors import BenchError
from bench.reporting.protocol import protocol_section, stopping_table
from bench.tokenizers import FitContext, make_tokenizer
from conftest import TINY_SETS as TINY

TINY_T5 = T5Size(num_layers=1, num_decoder_layers=1, d_model=32, d_ff=64, num_heads=2, d_kv=16, dropout=0.0)


def _id_backbone(n_items: int = 30):
    data = make_synthetic(SyntheticSpec(n_items=n_items, n_users=40, seed=1))
    split = leave_one_out(data)
    tok = make_tokenizer("id")
    tok.fit(FitContext(data, split, 0, log=lambda m: None))
    torch.manual_seed(0)
    return T5Backbone(tok, TINY_T5), split


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


def test_a_raised_cap_over_the_same_schedule_resumes_a_unit_as_if_uninterrupted(monkeypatch, tmp_path):
    """schedule_epochs fixes the constant rate's warm-up, so the cap (epochs) can be raised: a
    unit checkpointed under cap 3 and resumed under cap 6 ends as one trained under cap 6."""
    backbone, split = _id_backbone()
    valid = split.valid.subset(np.arange(10))
    scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    recipe = Recipe(epochs=6, schedule_epochs=3, schedule="constant", warmup_ratio=0.5, patience=2, batch_size=64)
    _scripted_validation(monkeypatch, backbone, scores)
    whole = training.train(backbone, split.train, valid, recipe, 0, log=lambda m: None)
    assert (whole.stopped_by, whole.best_epoch, len(whole.history)) == ("cap", 6, 6)
    straight = {k: v.clone() for k, v in backbone.state_dict().items()}

    backbone, _ = _id_backbone()
    checkpoint = tmp_path / "checkpoint.pt"
    _scripted_validation(monkeypatch, backbone, scores[:3])
    first = training.train(backbone, split.train, valid, dataclasses.replace(recipe, epochs=3, schedule_epochs=0), 0,
                           log=lambda m: None, checkpoint=checkpoint)
    assert (first.stopped_by, len(first.history)) == ("cap", 3)
    backbone, _ = _id_backbone()
    _scripted_validation(monkeypatch, backbone, scores[3:])
    resumed = training.train(backbone, split.train, valid, recipe, 0, log=lambda m: None, checkpoint=checkpoint)
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in whole.history]
    assert all(torch.equal(v, straight[k]) for k, v in backbone.state_dict().items())
    # the schedule's length, not the cap, sets the warm-up: over 6 epochs it would differ
    backbone, _ = _id_backbone()
    _scripted_validation(monkeypatch, backbone, scores)
    training.train(backbone, split.train, valid, dataclasses.replace(recipe, schedule_epochs=0), 0, log=lambda m: None)
    assert not all(torch.equal(v, straight[k]) for k, v in backbone.state_dict().items())


def test_schedule_epochs_is_checked_and_a_raised_cap_is_no_other_recipe():
    with pytest.raises(ValueError, match="schedule_epochs"):
        Recipe(epochs=10, schedule_epochs=5, schedule="cosine")
    saved = {"epochs": 40, "schedule": "constant"}  # written before schedule_epochs existed
    now = {**saved, "schedule_epochs": 0}  # what this version writes for it
    assert setting_differences("recipe", saved, {**now, "epochs": 200, "schedule_epochs": 40}) == []
    assert setting_differences("recipe", {**now, "epochs": 200, "schedule_epochs": 40}, now) == [
        "epochs: 200 there, 40 here", "schedule_epochs: 40 there, 0 here"]  # a lowered cap could cut a unit short
    assert setting_differences("recipe", saved, {**now, "epochs": 200}) == [
        "epochs: 40 there, 200 here"]  # the schedule (its warm-up) spans the cap: another recipe
    assert setting_differences("recipe", saved, {**now, "epochs": 200, "schedule_epochs": 50}) == [
        "epochs: 40 there, 200 here", "schedule_epochs: absent (default 0) there, 50 here"]


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
    assert "cap 200 epochs; the rate's schedule spans 40 epochs" in section(
        {"patience": 4, "epochs": 200, "schedule_epochs": 40})


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
