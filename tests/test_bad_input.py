"""Bad input to `bench run`: one line naming the file or option, exit code 2, no traceback,
and no results folder left behind (everything is checked before the first write)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from bench.cli import main
from bench.config import preset_config
from bench.datasets import load_dataset
from bench.run_inputs import runnable_tokenizers

from test_data_stats import write_letter
from test_run import TINY


def edit(path: Path, change: Callable[[dict], None]) -> None:
    obj = json.loads(path.read_text())
    change(obj)
    path.write_text(json.dumps(obj))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def write_index(d: Path, extra: dict) -> Path:
    path = d.parent / "codes.index.json"
    path.write_text(json.dumps({**{str(i): [f"<a_{i}>"] for i in range(5)}, **extra}))
    return path


def no_text(d: Path) -> None:
    (d / "Toy.item.json").unlink()
    (d / "Toy.emb-minilm.npy").unlink()


# name: (damage to the Toy folder d, extra `bench run` arguments, words the message must hold)
CASES: dict[str, tuple[Callable[[Path], object], Callable[[Path], list[str]], list[str]]] = {
    "truncated inter.json": (lambda d: truncate(d / "Toy.inter.json"), lambda d: [], ["Toy.inter.json", "not valid JSON"]),
    "item.json not JSON": (lambda d: (d / "Toy.item.json").write_text("title: guitar"), lambda d: [], ["Toy.item.json", "not valid JSON"]),
    "negative item id": (lambda d: edit(d / "Toy.inter.json", lambda o: o["0"].append(-4)), lambda d: [],
                         ["Toy.inter.json", "out of range"]),
    "index.json id out of range": (lambda d: edit(d / "Toy.index.json", lambda o: o.update({"9": ["<a_1>"]})), lambda d: [],
                                   ["Toy.index.json", "out of range"]),
    "precomputed codes for an unknown item": (None, lambda d: ["--tokenizers", f"precomputed:{write_index(d, {'7': ['<a_0>']})}"],
                                              ["codes.index.json", "not in the data set"]),
    "empty data set": (lambda d: (d / "Toy.inter.json").write_text("{}"), lambda d: [], ["empty"]),
    "no user with 3 interactions": (lambda d: (d / "Toy.inter.json").write_text(json.dumps({"0": [0, 1], "1": [2]})),
                                    lambda d: [], ["no user has at least 3 interactions"]),
    "item without text, text tokenizer": (None, lambda d: ["--tokenizers", "text"], ["tokenizer text", "item 2", "neither title nor description"]),
    "no item text, tiger tokenizer": (no_text, lambda d: ["--tokenizers", "tiger"], ["tokenizer tiger needs item text"]),
    "NaN text embeddings": (lambda d: np.save(d / "Toy.emb-minilm.npy", np.full((5, 8), np.nan, np.float32)), lambda d: [],
                            ["Toy.emb-minilm.npy", "NaN"]),
    "wrong-shape text embeddings": (lambda d: np.save(d / "Toy.emb-minilm.npy", np.zeros((3, 8), np.float32)), lambda d: [],
                                    ["Toy.emb-minilm.npy", "one row per item"]),
    "NaN CF embeddings": (lambda d: torch.save(torch.full((5, 32), float("nan")), d / "Toy-32d-sasrec.pt"), lambda d: [],
                          ["Toy-32d-sasrec.pt", "NaN"]),
    "wrong-shape CF embeddings": (lambda d: torch.save(torch.zeros(5, 4, 2), d / "Toy-32d-sasrec.pt"), lambda d: [],
                                  ["Toy-32d-sasrec.pt", "one row per item"]),
    "missing data folder": (lambda d: [p.unlink() for p in d.iterdir()] and d.rmdir(), lambda d: [], ["Toy", "folder not found"]),
    "unknown tokenizer": (None, lambda d: ["--tokenizers", "id,nope"], ["unknown tokenizer", "nope"]),
    "unknown backbone": (None, lambda d: ["--backbone", "lstm"], ["--backbone", "lstm"]),
    "unknown data set": (None, lambda d: ["--dataset", "imdb:x"], ["unknown data set", "imdb"]),
    "unknown preset": (None, lambda d: ["--preset", "huge"], ["unknown preset", "huge"]),
    "unknown device": (None, lambda d: ["--device", "tpu9"], ["--device", "tpu9"]),
    "invalid recipe value": (None, lambda d: ["--set", "recipe.lr=-1"], ["recipe", "lr must be > 0"]),
    "invalid model size": (None, lambda d: ["--set", "t5.d_model=0"], ["t5", "must be positive"]),
    "option of the wrong type": (None, lambda d: ["--set", "recipe.epochs=many"], ["recipe.epochs", "many"]),
    "unknown option": (None, lambda d: ["--set", "recipe.speed=9"], ["speed", "unknown option"]),
    "invalid tokenizer option": (None, lambda d: ["--set", "tiger.levels=-2"], ["tiger"]),
    "bad seeds": (None, lambda d: ["--seeds", "1,x"], ["--seeds"]),
}


def one_line_error(args: list[str]) -> str:
    result = CliRunner().invoke(main, ["run", *args])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    err = result.stderr.strip().splitlines()[-1]
    assert err.startswith("error: "), result.stderr
    return err


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(tmp_path: Path, case: str):
    damage, extra, words = CASES[case]
    folder = write_letter(tmp_path / "Toy")
    if damage is not None:
        damage(folder)
    out = tmp_path / "results"
    err = one_line_error(["--dataset", f"letter:{folder}", "--tokenizers", "id", "--out", str(out), *TINY, *extra(folder)])
    for word in words:
        assert word in err, err
    assert not out.exists()  # no partial results


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_unwritable_output_folder(tmp_path: Path, where: str):
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    out = blocker if where == "a file" else blocker / "run"
    err = one_line_error(["--dataset", "synthetic", "--tokenizers", "id", "--out", str(out), *TINY])
    assert "--out" in err and str(out) in err and "cannot write" in err
    assert blocker.read_text() == "not a folder"


def test_read_only_output_folder(tmp_path: Path):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        if (parent / "probe").touch() is None:  # root ignores permissions: nothing to test
            pytest.skip("running as root")
    except PermissionError:
        err = one_line_error(["--dataset", "synthetic", "--tokenizers", "id", "--out", str(parent / "run"), *TINY])
        assert "--out" in err and "cannot write" in err
    finally:
        parent.chmod(0o700)


def test_users_with_fewer_than_3_interactions_are_dropped_with_a_count(tmp_path: Path):
    folder = write_letter(tmp_path / "Toy")  # user 2 has 2 interactions
    out = tmp_path / "results"
    result = CliRunner().invoke(main, ["run", "--dataset", f"letter:{folder}", "--tokenizers", "id", "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    assert "1 users with fewer than 3 interactions dropped" in result.stderr
    assert json.loads((out / "config.json").read_text())["data"]["n_dropped_users"] == 1
    assert set(pd.read_csv(out / "per_user.csv", dtype={"user": str})["user"]) == {"0", "1", "3"}


def test_text_tokenizers_from_all_are_skipped_without_text(tmp_path: Path):
    folder = write_letter(tmp_path / "Toy")  # item 2 has no text; text embeddings are shipped
    messages: list[str] = []
    config = preset_config("quick", dataset=f"letter:{folder}", tokenizers=["id", "text", "tiger"], explicit_tokenizers=[],
                           device="cpu", out=str(tmp_path / "r"))
    assert runnable_tokenizers(config.tokenizers, load_dataset(config.dataset), config, messages.append) == ["id", "tiger"]
    assert any(m.startswith("skipped: tokenizer text") for m in messages)  # tiger reads the shipped embeddings
    no_text(folder)
    assert runnable_tokenizers(config.tokenizers, load_dataset(config.dataset), config, messages.append) == ["id"]
