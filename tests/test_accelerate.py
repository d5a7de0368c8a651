"""Two CPU processes (gloo) under `accelerate launch`: a tiny `bench run` trains and
writes its results, and a fixed checkpoint evaluated in two processes ranks every test user
exactly as one process does."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.backbones import CodeTrie
from bench.backbones.base import EOS
from bench.training import evaluate, train

from ddp_eval import RECIPE, fixed_model
from test_run import TINY

HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_and_evaluate_like_one(tmp_path: Path):
    # the fixed checkpoint: one epoch of training in this (single) process
    backbone, split = fixed_model()
    train(backbone, split.train, split.valid, RECIPE, seed=0, log=lambda m: None)
    checkpoint = tmp_path / "model.pt"
    torch.save(backbone.state_dict(), checkpoint)
    one = evaluate(backbone, CodeTrie.build(backbone.item_sequences(), EOS), split.test, RECIPE)

    out, ranking = tmp_path / "run", tmp_path / "ranking.npz"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE)}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(free_port()), str(HERE / "ddp_eval.py"), str(checkpoint), str(ranking),
           "--tokenizers", "id", "--out", str(out), *TINY]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    # training completed in two processes, and only one of them wrote the results
    history = pd.read_csv(out / "history.csv")
    assert list(history["epoch"]) == [1, 2] and history["train_loss"].notna().all()
    metrics = pd.read_csv(out / "metrics.csv")
    assert set(metrics["tokenizer"]) == {"id", "popularity", "sasrec"}
    assert metrics["value"].between(0, 1).all()
    assert proc.stderr.count("id seed 0: test Recall@10") == 1
    assert proc.stderr.count("process group released: True") == 2  # not left to interpreter teardown
    assert not list(out.rglob("*.tmp")) and not (out / "units" / "id-seed0" / "checkpoint.pt").exists()

    # the fixed checkpoint: two processes rank every user exactly as one does
    two = np.load(ranking)
    assert int(two["processes"]) == 2
    assert np.array_equal(two["items"], one.items)
    assert np.array_equal(two["scores"], one.scores)


def test_results_line_is_printed_by_process_zero_only(monkeypatch, capsys):
    from bench.cli import echo_result

    monkeypatch.setenv("RANK", "1")
    echo_result("results/x")
    assert capsys.readouterr().out == ""
    monkeypatch.setenv("RANK", "0")
    echo_result("results/x")
    assert capsys.readouterr().out == "results: results/x\n"
