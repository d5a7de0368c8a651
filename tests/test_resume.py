"""Kill and resume: a run stopped after its first epoch continues from the checkpoint
(weights, optimizer, schedule, RNG states, early stopping) and ends with the same results as
a run that was never stopped; checkpoints are loaded safely."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

import bench.training as training
from bench.cli import main
from bench.errors import BenchError
from bench.run_files import git_commit, versions, versions_text
from bench.stage_clock import machine_name

from test_run import TINY

ARGS = ["run", "--tokenizers", "id", "--seeds", "0", *TINY, "--set", "recipe.epochs=3"]


def bench_run(out: Path) -> str:
    result = CliRunner().invoke(main, [*ARGS, "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_interrupted_training_resumes_to_the_same_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    whole = tmp_path / "whole"
    bench_run(whole)

    stopped = tmp_path / "stopped"
    save = training.save_checkpoint

    def save_then_die(path: Path, state: dict) -> None:
        save(path, state)
        if state["epoch"] == 1:
            raise KeyboardInterrupt  # the process is killed right after its first checkpoint

    monkeypatch.setattr(training, "save_checkpoint", save_then_die)
    result = CliRunner().invoke(main, [*ARGS, "--out", str(stopped)], catch_exceptions=False)
    assert result.exit_code == 1 and "Aborted" in result.output  # click's answer to Ctrl-C
    unit = stopped / "units" / "id-seed0"
    assert (unit / "checkpoint.pt").exists() and not (unit / "done").exists()
    assert not (stopped / "metrics.csv").exists() and not list(stopped.rglob("*.tmp"))
    monkeypatch.undo()

    log = bench_run(stopped)  # the same command again
    assert "resumed from" in log and "after epoch 1" in log
    assert "id epoch 1:" not in log and "id epoch 2:" in log  # epoch 1 was not trained again
    assert not (unit / "checkpoint.pt").exists()  # removed once the unit is done
    assert (stopped / "metrics.csv").read_text() == (whole / "metrics.csv").read_text()
    assert (stopped / "rankings.csv").read_text() == (whole / "rankings.csv").read_text()
    columns = ["epoch", "train_loss", "valid_ndcg@10", "best_epoch"]
    pd.testing.assert_frame_equal(pd.read_csv(stopped / "history.csv")[columns], pd.read_csv(whole / "history.csv")[columns])


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


@pytest.mark.parametrize("content", ["garbage", "pickle", "foreign"])
def test_damaged_or_foreign_checkpoint_is_one_line_error(tmp_path: Path, content: str):
    path = tmp_path / "checkpoint.pt"
    if content == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    elif content == "pickle":
        torch.save({"format": 1, "x": Evil()}, path)  # weights_only refuses to run it
    else:
        torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(BenchError, match="checkpoint"):
        training.load_checkpoint(path)


def test_crash_while_merging_leaves_no_half_written_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from bench.config import preset_config
    from bench.runner import Run

    config = preset_config("quick", {"synthetic.n_items": "30", "synthetic.n_users": "40"}, tokenizers=[], device="cpu",
                           out=str(tmp_path / "r"))
    run = Run(config, log=lambda m: None)
    run.prepare()
    run.popularity_unit(0)
    write = pd.DataFrame.to_csv

    def half_then_crash(frame: pd.DataFrame, path, *args, **kwargs):
        if Path(path).parent == run.out:  # a top-level file: write half of it, then die
            write(frame.head(len(frame) // 2), path, *args, **kwargs)
            raise KeyboardInterrupt
        return write(frame, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_crash)
    with pytest.raises(KeyboardInterrupt):
        run.merge()
    assert not (run.out / "metrics.csv").exists() and not list(run.out.glob(".*.tmp"))
    monkeypatch.undo()
    run.merge()
    metrics = pd.read_csv(run.out / "metrics.csv")
    assert len(metrics) == len(pd.read_csv(run.unit_dir("popularity", 0) / "metrics.csv"))


def test_report_merges_units_of_runs_that_did_not_merge_themselves(tmp_path: Path):
    """Two runs share a folder (one per core): the later one's merge, or `bench report` after
    a kill, lists every finished unit, not only those its own run knew of."""
    out = tmp_path / "shared"
    base = ["run", "--seeds", "0", *TINY, "--out", str(out)]
    for tokenizers in ("id", "text"):
        result = CliRunner().invoke(main, [*base, "--tokenizers", tokenizers], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    merged = pd.read_csv(out / "metrics.csv")
    assert {"id", "text", "popularity", "sasrec"} <= set(merged["tokenizer"])
    data_row = pd.read_csv(out / "timings.csv").iloc[0]
    assert (data_row["tokenizer"], data_row["stage"]) == ("all", "data")

    for name in ("metrics.csv", "per_user.csv", "rankings.csv", "history.csv", "timings.csv"):
        (out / name).unlink()  # killed before its merge
    result = CliRunner().invoke(main, ["report", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    again = pd.read_csv(out / "metrics.csv")
    pd.testing.assert_frame_equal(again.sort_values(list(again.columns)).reset_index(drop=True),
                                  merged.sort_values(list(merged.columns)).reset_index(drop=True))
    report = (out / "report.md").read_text()
    assert "\n| id | " in report and "\n| text | " in report


def test_a_unit_locked_by_another_process_is_skipped_and_a_stale_lock_file_is_not(tmp_path):
    """Two runs sharing a folder never train the same unit: a held lock makes the other skip
    it; a lock file left by a killed process (no holder) does not block."""
    import subprocess
    import sys
    import time

    from bench.locks import run_locked

    unit = tmp_path / "units" / "id-seed0"
    lock = str(unit.with_name("id-seed0.lock"))
    unit.parent.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", f"from filelock import FileLock; l = FileLock({lock!r}); l.acquire(); "
                               "print('held', flush=True); import time; time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    ran, logs = [], []
    assert not run_locked(unit, lambda: ran.append(1), logs.append)
    assert not ran and "another process" in logs[0]
    holder.kill()
    holder.wait()
    time.sleep(0.1)
    assert (unit.parent / "id-seed0.lock").exists()  # the file stays; the lock went with the process
    assert run_locked(unit, lambda: ran.append(1), logs.append) and ran == [1]


@pytest.mark.parametrize("begun_without_cpu_time", [False, True])
def test_cpu_time_adds_up_across_a_resume_and_is_unknown_for_a_unit_begun_without_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, begun_without_cpu_time: bool):
    save = training.save_checkpoint

    def save_then_die(path: Path, state: dict) -> None:
        if begun_without_cpu_time:
            state = {k: v for k, v in state.items() if k != "cpu_seconds"}  # a checkpoint of an older version
        save(path, state)
        if state["epoch"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "save_checkpoint", save_then_die)
    assert CliRunner().invoke(main, [*ARGS, "--out", str(tmp_path)], catch_exceptions=False).exit_code == 1
    monkeypatch.undo()
    bench_run(tmp_path)
    history = pd.read_csv(tmp_path / "units" / "id-seed0" / "history.csv")
    timings = pd.read_csv(tmp_path / "units" / "id-seed0" / "timings.csv").set_index("stage")
    assert timings.loc["evaluate", "cpu_seconds"] > 0 and timings["cpu_seconds"].drop("train").notna().all()
    assert (timings["machine"] == machine_name(torch.device("cpu"))).all()  # what the times were measured on
    assert (timings["software"] == versions_text(versions())).all()  # and with which package versions
    assert json.loads((tmp_path / "units" / "id-seed0" / "done").read_text())["git_commit"] == git_commit()
    if begun_without_cpu_time:
        assert history["cpu_seconds"].iloc[1:].isna().all() and pd.isna(timings.loc["train", "cpu_seconds"])
    else:  # cumulative over the epochs of both processes, and the unit's training total is the last
        cpu = history["cpu_seconds"].to_numpy()
        assert (cpu > 0).all() and (cpu[1:] > cpu[:-1]).all()
        assert timings.loc["train", "cpu_seconds"] >= cpu[-1] > 0
