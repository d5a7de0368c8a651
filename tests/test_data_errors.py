"""A malformed data file of each kind: one line naming the file, exit code 2, no traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bench.cli import main
from test_data_stats import write_letter


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def edit_json(path: Path, change: Callable[[dict], None]) -> None:
    obj = json.loads(path.read_text())
    change(obj)
    path.write_text(json.dumps(obj))


CASES = {
    "truncated inter.json": ("Toy.inter.json", lambda d: truncate(d / "Toy.inter.json"), "not valid JSON"),
    "truncated item.json": ("Toy.item.json", lambda d: truncate(d / "Toy.item.json"), "not valid JSON"),
    "truncated index.json": ("Toy.index.json", lambda d: truncate(d / "Toy.index.json"), "not valid JSON"),
    "negative item id in inter": ("Toy.inter.json",
                                  lambda d: edit_json(d / "Toy.inter.json", lambda o: o["0"].append(-1)), "out of range"),
    "non-integer item id in inter": ("Toy.inter.json",
                                     lambda d: edit_json(d / "Toy.inter.json", lambda o: o["0"].append(1.5)), "not an integer id"),
    "boolean item id in inter": ("Toy.inter.json",
                                 lambda d: edit_json(d / "Toy.inter.json", lambda o: o["0"].append(True)), "not an integer id"),
    "negative item id in item.json": ("Toy.item.json",
                                      lambda d: edit_json(d / "Toy.item.json", lambda o: o.update({"-3": {}})), "out of range"),
    "index id out of range": ("Toy.index.json",
                              lambda d: edit_json(d / "Toy.index.json", lambda o: o.update({"7": ["<a_1>"]})), "out of range"),
    "index codes not a list": ("Toy.index.json",
                               lambda d: edit_json(d / "Toy.index.json", lambda o: o.update({"2": "<a_1>"})), "list of token"),
    "npy wrong rows": ("Toy.emb-minilm.npy",
                       lambda d: np.save(d / "Toy.emb-minilm.npy", np.zeros((4, 8), np.float32)), "one row per item"),
    "npy truncated": ("Toy.emb-minilm.npy", lambda d: truncate(d / "Toy.emb-minilm.npy"), "not a readable .npy"),
    "npy of strings": ("Toy.emb-minilm.npy",
                       lambda d: np.save(d / "Toy.emb-minilm.npy", np.array([["a"]] * 5)), "expected numbers"),
    "pt wrong rows": ("Toy-32d-sasrec.pt", lambda d: torch.save(torch.zeros(6, 32), d / "Toy-32d-sasrec.pt"), "one row per item"),
    "pt truncated": ("Toy-32d-sasrec.pt", lambda d: truncate(d / "Toy-32d-sasrec.pt"), "not a readable tensor"),
    "pt with NaN": ("Toy-32d-sasrec.pt",
                    lambda d: torch.save(torch.full((5, 32), float("nan")), d / "Toy-32d-sasrec.pt"), "NaN"),
    "no inter.json (like the released Yelp)": ("Toy", lambda d: (d / "Toy.inter.json").unlink(), "no *.inter.json"),
}


def one_line_error(spec: str) -> str:
    result = CliRunner().invoke(main, ["data", "stats", spec])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # not a traceback
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_letter_folder(tmp_path: Path, case: str):
    file, damage, problem = CASES[case]
    folder = write_letter(tmp_path / "Toy")
    damage(folder)
    err = one_line_error(f"letter:{folder}")
    assert file in err and problem in err, err


def test_missing_folder(tmp_path: Path):
    assert "folder not found" in one_line_error(f"letter:{tmp_path / 'nope'}")


def test_released_yelp_gives_a_clear_error():
    yelp = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "letter" / "Yelp"
    if not yelp.is_dir():
        pytest.skip("../shared/data is absent")
    assert "no *.inter.json" in one_line_error(f"letter:{yelp}")


def write_ml100k(folder: Path) -> Path:
    folder.mkdir()
    (folder / "u.data").write_text("1\t1\t5\t100\n1\t2\t3\t101\n\n2\t1\t4\t99\n")
    flags = "|".join(["0"] * 19)
    (folder / "u.item").write_text(f"1|Toy Story (1995)|01-Jan-1995||url|{flags}\n2|Heat (1995)|01-Jan-1995||url|{flags}\n")
    return folder


def test_ml100k_small_folder_loads(tmp_path: Path):
    result = CliRunner().invoke(main, ["data", "stats", f"ml-100k:{write_ml100k(tmp_path / 'ml')}", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["interactions"] == 3  # the blank line is skipped


@pytest.mark.parametrize("file,text,line", [
    ("u.data", "1\t1\t5\t100\n1\t2\t3\n", 2),
    ("u.data", "1\t1\t5\t100\n1\t2\t3\tsoon\n", 2),
    ("u.item", "1|Toy Story (1995)|too few fields\n", 1),
])
def test_ml100k_malformed_line(tmp_path: Path, file: str, text: str, line: int):
    folder = write_ml100k(tmp_path / "ml")
    (folder / file).write_text(text)
    err = one_line_error(f"ml-100k:{folder}")
    assert f"{file}: line {line}:" in err


@pytest.mark.parametrize("file,text,line", [
    ("ratings.dat", "1::1::5::100\n1::2::3::x\n", 2),
    ("ratings.dat", "1::1::5::100\n\n1::2\n", 3),
    ("movies.dat", "1::Toy Story (1995)::Animation\n2::Heat (1995)\n", 2),
])
def test_ml1m_malformed_line(tmp_path: Path, file: str, text: str, line: int):
    folder = tmp_path / "ml1m"
    folder.mkdir()
    (folder / "ratings.dat").write_text("1::1::5::100\n1::2::3::101\n")
    (folder / "movies.dat").write_text("1::Toy Story (1995)::Animation|Comedy\n2::Heat (1995)::Action\n")
    (folder / file).write_text(text)
    err = one_line_error(f"ml-1m:{folder}")
    assert f"{file}: line {line}:" in err


def test_ml1m_missing_movie(tmp_path: Path):
    folder = tmp_path / "ml1m"
    folder.mkdir()
    (folder / "ratings.dat").write_text("1::1::5::100\n1::3::3::101\n")
    (folder / "movies.dat").write_text("1::Toy Story (1995)::Animation\n")
    assert "movies.dat: no entry for item 3" in one_line_error(f"ml-1m:{folder}")
