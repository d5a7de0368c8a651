"""Units as jobs (bench/executor.py): worker processes and submitit's path give the results of
one process; failures are reported per unit; trackers record a unit's run (TensorBoard read
back); the `paper` preset is LETTER-TIGER's recipe and may stop on validation loss."""

import dataclasses
import os

import numpy as np
import pandas as pd
import pytest
import torch

from bench import training
from bench.config import preset_config
from bench.errors import BenchError
from bench.executor import Dispatch, UnitJob, parse_slurm, run_submitit
from bench.runner import Run
from bench.tracking import check_trackers, flat_settings

TINY = {"synthetic.n_items": "60", "synthetic.n_users": "80", "recipe.epochs": "2", "recipe.valid_users": "0",
        "t5.d_model": "32", "t5.d_ff": "64", "t5.num_heads": "2", "t5.d_kv": "16", "t5.num_layers": "1",
        "t5.num_decoder_layers": "1", "sasrec.epochs": "1", "tiger.epochs": "5", "letter.epochs": "5"}


def _config(out, **sets):
    return preset_config("quick", {**TINY, **sets}, dataset="synthetic", tokenizers=["tiger", "letter"], device="cpu",
                         out=str(out), seeds=[0])


def _metrics(out):
    frame = pd.read_csv(out / "metrics.csv")
    return frame.sort_values(list(frame.columns[:-1])).reset_index(drop=True)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """One process, from a cold embedding cache (the cache is under the working directory):
    the first tokenizer computes the text and CF embeddings, where jobs load them."""
    torch.set_num_threads(1)
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cold"))
    try:
        out = tmp_path_factory.mktemp("one") / "run"
        Run(_config(out), log=lambda m: None).run()
    finally:
        os.chdir(cwd)
    return out


def test_units_in_two_worker_processes_give_the_results_of_one_process(one_process, tmp_path):
    logs = []
    Run(_config(tmp_path / "jobs"), log=logs.append, dispatch=Dispatch("local", jobs=2, threads_per_job=1)).run()
    pd.testing.assert_frame_equal(_metrics(tmp_path / "jobs"), _metrics(one_process))
    assert any("2 units as jobs" in line for line in logs)
    assert sum("finished" in line for line in logs) == 2  # each unit trained once, by a worker


def test_the_submitit_path_runs_units_as_jobs_and_reports_a_failed_one(one_process, tmp_path):
    """What --executor slurm runs, through submitit's local executor (real subprocesses): a
    unit's job gives the unit of one process; a failing job is reported by unit, with its log."""
    run = Run(_config(tmp_path / "sub"), log=lambda m: None)
    run.prepare()
    good, bad = (UnitJob(run.config, label, 0, threads=1) for label in ("tiger", "no-such-variant"))
    logs = []
    failed = run_submitit([bad, good], Dispatch("submitit-local", jobs=2), tmp_path / "sub" / "submitit", logs.append)
    assert len(failed) == 1 and failed[0].startswith("no-such-variant-seed0: ") and "no variant" in failed[0]
    assert "logs: " in failed[0] and any(line.startswith("tiger-seed0: finished") for line in logs)
    got = pd.read_csv(tmp_path / "sub" / "units" / "tiger-seed0" / "metrics.csv")
    pd.testing.assert_frame_equal(got, pd.read_csv(one_process / "units" / "tiger-seed0" / "metrics.csv"))


def test_dispatch_and_slurm_options_are_checked():
    assert parse_slurm(("partition=gpu", "timeout_min=90", "gpus_per_node=1", "slurm_qos=high")) == {
        "slurm_partition": "gpu", "timeout_min": 90, "gpus_per_node": 1, "slurm_qos": "high"}
    with pytest.raises(BenchError, match="KEY=VALUE"):
        parse_slurm(("partition",))
    with pytest.raises(BenchError, match="unknown"):
        Dispatch("ray")
    with pytest.raises(BenchError, match="only with --executor slurm"):
        Dispatch("local", slurm={"slurm_partition": "gpu"})
    assert Dispatch("local", jobs=1).in_process and not Dispatch("local", jobs=2).in_process
    assert Dispatch("local", jobs=2, threads_per_job=3).threads() == 3
    with pytest.raises(BenchError, match="unknown"):
        check_trackers(["neptune"])


def test_tensorboard_receives_each_epoch_the_settings_and_the_final_metrics(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    config = dataclasses.replace(_config(out), tokenizers=["id"])
    Run(config, log=lambda m: None, trackers=["tensorboard"]).run()
    folder = out / "trackers" / "id-seed0"
    events = EventAccumulator(str(folder)).Reload()
    scalars = events.Tags()["scalars"]
    assert [e.step for e in events.Scalars("train_loss")] == [1, 2]
    history = pd.read_csv(out / "units" / "id-seed0" / "history.csv")
    assert np.allclose([e.value for e in events.Scalars("valid_ndcg@10")], history["valid_ndcg@10"])
    test_ndcg = pd.read_csv(out / "metrics.csv").query("split == 'test' and metric == 'ndcg' and k == 10")["value"]
    assert "test/ndcg@10" in scalars and np.isclose(events.Scalars("test/ndcg@10")[0].value, test_ndcg.iloc[0])
    assert list(folder.glob("*/hparams.yml"))  # the unit's settings
    assert flat_settings({"recipe": {"lr": 1e-3}, "seeds": [0, 1], "x": None}) == {"recipe.lr": 1e-3, "seeds": "[0, 1]"}


def test_the_paper_preset_is_letter_tigers_recipe():
    recipe = preset_config("paper").recipe
    assert (recipe.batch_size, recipe.lr, recipe.weight_decay, recipe.schedule, recipe.warmup_ratio, recipe.epochs,
            recipe.patience, recipe.stop_on) == (1024, 5e-4, 0.01, "cosine", 0.01, 200, 20, "loss")


def test_stopping_on_validation_loss_restores_the_epoch_with_the_lowest_loss(monkeypatch):
    from bench.backbones import T5Backbone
    from bench.config import Recipe, T5Size
    from bench.datasets import SyntheticSpec, leave_one_out, make_synthetic
    from bench.tokenizers import FitContext, make_tokenizer

    data = make_synthetic(SyntheticSpec(n_items=30, n_users=40, seed=1))
    split = leave_one_out(data)
    tok = make_tokenizer("id")
    tok.fit(FitContext(data, split, 0, log=lambda m: None))
    torch.manual_seed(0)
    backbone = T5Backbone(tok, T5Size(num_layers=1, num_decoder_layers=1, d_model=32, d_ff=64, num_heads=2, d_kv=16))
    losses = iter([3.0, 2.0, 2.5, 2.6])  # best at epoch 2, then two worse: patience 2 stops at 4
    monkeypatch.setattr(training, "validation_loss", lambda *a: next(losses))
    states = {}  # the weights after each epoch, through the on_epoch hook
    recipe = Recipe(epochs=10, patience=2, stop_on="loss", batch_size=16, lr=1e-3)
    result = training.train(backbone, split.train, split.valid, recipe, 0, log=lambda m: None,
                            on_epoch=lambda row: states.update({row["epoch"]: {k: v.clone() for k, v in
                                                                              backbone.state_dict().items()}}))
    assert [row["valid_loss"] for row in result.history] == [3.0, 2.0, 2.5, 2.6]
    assert "valid_ndcg@10" not in result.history[0]
    assert (result.best_epoch, result.best_valid, result.stopped_by) == (2, 2.0, "patience")
    restored = backbone.state_dict()
    assert all(torch.equal(restored[k], v) for k, v in states[2].items())
    assert not all(torch.equal(restored[k], v) for k, v in states[4].items())


def test_validation_loss_is_the_training_loss_on_the_validation_targets():
    from bench.backbones import T5Backbone
    from bench.config import Recipe, T5Size
    from bench.datasets import SyntheticSpec, leave_one_out, make_synthetic
    from bench.tokenizers import FitContext, make_tokenizer

    data = make_synthetic(SyntheticSpec(n_items=30, n_users=40, seed=1))
    split = leave_one_out(data)
    tok = make_tokenizer("id")
    tok.fit(FitContext(data, split, 0, log=lambda m: None))
    torch.manual_seed(0)
    backbone = T5Backbone(tok, T5Size(num_layers=1, num_decoder_layers=1, d_model=32, d_ff=64, num_heads=2, d_kv=16,
                                      dropout=0.0)).eval()
    recipe = Recipe(eval_batch_size=4, tau=0.7)  # batches of 16 users
    accelerator = training.make_accelerator(torch.device("cpu"))
    got = training.validation_loss(backbone, split.valid, recipe, accelerator)
    with torch.no_grad():
        batch = backbone.collate(split.valid.histories, split.valid.targets.tolist())
        whole = float(backbone(batch, 0.7))
    assert got == pytest.approx(whole, rel=1e-5)


def test_compare_paper_puts_our_seed_mean_and_std_beside_the_published_figures(tmp_path):
    from click.testing import CliRunner

    from bench.cli import main

    rows = [("Instruments", label, seed, "test", metric, 10, value)
            for label, base in (("precomputed-Instruments", 0.10), ("id", 0.05))
            for seed, shift in ((0, 0.0), (1, 0.002), (2, 0.004))
            for metric, value in (("recall", base + shift), ("ndcg", base / 2 + shift))]
    rows.append(("Instruments", "id", 0, "valid", "recall", 10, 0.9))  # validation rows are not compared
    pd.DataFrame(rows, columns=["dataset", "tokenizer", "seed", "split", "metric", "k", "value"]).to_csv(
        tmp_path / "metrics.csv", index=False)
    result = CliRunner().invoke(main, ["compare-paper", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "paper_comparison.md").read_text()
    assert "| precomputed-Instruments | LETTER-TIGER | 3 | 0.1020 ± 0.0020 | 0.1122 | 0.91 |" in text
    assert "| id |  | 3 | 0.0520 ± 0.0020 |  |  |" in text  # no published counterpart: blank
    bad = CliRunner().invoke(main, ["compare-paper", str(tmp_path / "missing")])
    assert bad.exit_code == 2 and "no metrics.csv" in bad.output
