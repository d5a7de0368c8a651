"""`bench data stats`: counts on the released Instruments folder and a hand-counted split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bench.cli import main

INSTRUMENTS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "letter" / "Instruments"


def stats(spec: str) -> dict:
    result = CliRunner().invoke(main, ["data", "stats", spec, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def write_letter(folder: Path) -> Path:
    """Four users: lengths 5, 3, 2, 4. By hand: train samples are the prefixes of s[:-2] with
    k >= 1: 2 (user 0) + 0 (user 1) + 1 (user 3) = 3; user 2 (2 items) is dropped."""
    folder.mkdir()
    inter = {"0": [0, 1, 2, 3, 4], "1": [2, 3, 4], "2": [1, 0], "3": [4, 3, 2, 1]}
    (folder / "Toy.inter.json").write_text(json.dumps(inter))
    (folder / "Toy.item.json").write_text(json.dumps({
        "0": {"title": "zero", "description": "d"}, "1": {"title": "one"}, "2": {"title": "", "description": ""},
        "3": {"title": "three", "categories": ["a", "b"]}, "4": {"title": "four"}}))
    (folder / "Toy.index.json").write_text(json.dumps({str(i): [f"<a_{i}>", "<b_0>"] for i in range(5)}))
    np.save(folder / "Toy.emb-minilm.npy", np.zeros((5, 8), dtype=np.float32))
    torch.save(torch.zeros(5, 32), folder / "Toy-32d-sasrec.pt")
    return folder


def test_hand_counted_split(tmp_path: Path):
    s = stats(f"letter:{write_letter(tmp_path / 'Toy')}")
    assert (s["users"], s["items"], s["interactions"]) == (4, 5, 14)
    assert s["sequence_length"] == {"min": 2, "median": 3.5, "mean": 3.5, "max": 5}
    assert s["sparsity"] == pytest.approx(1 - 14 / 20)
    assert s["users_dropped_by_split"] == 1
    assert s["samples"] == {"train": 3, "valid": 3, "test": 3}
    assert s["item_text"] and s["items_with_text"] == 4
    assert s["official_index"]
    assert s["text_embeddings"] == [5, 8] and s["cf_embeddings"] == [5, 32]


def test_text_output(tmp_path: Path):
    result = CliRunner().invoke(main, ["data", "stats", f"letter:{write_letter(tmp_path / 'Toy')}"])
    assert result.exit_code == 0, result.output
    assert "samples         train 3, valid 3, test 3" in result.output
    assert "CF embeddings   yes 5 x 32" in result.output


def test_synthetic():
    s = stats("synthetic")
    assert s["users"] == 1000 and s["items"] == 400
    assert s["samples"]["train"] == s["interactions"] - 3 * s["users"]  # every synthetic user has >= 3 items


@pytest.mark.skipif(not INSTRUMENTS.is_dir(), reason="../shared/data is absent")
def test_instruments_matches_the_data_readme():
    s = stats(f"letter:{INSTRUMENTS}")
    assert (s["users"], s["items"], s["interactions"]) == (24_772, 9_922, 206_153)
    assert s["users_dropped_by_split"] == 0
    # every user gives one valid and one test sample; training gets the rest minus one per user
    assert s["samples"] == {"train": 206_153 - 3 * 24_772, "valid": 24_772, "test": 24_772}
    assert s["official_index"] and s["cf_embeddings"] == [9_922, 32] and not s["item_text"]
