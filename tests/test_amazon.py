"""Amazon preprocessing on tiny raw files written in the real 2014 and 2018 dump formats."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import main
from bench.datasets import load_dataset
from bench.datasets.amazon import AmazonOptions, clean_text, kcore, prepare_amazon
from bench.errors import DataError

# (reviewer, asin, time). With k=2 the 2-core is {U1, U2} x {A, B}; reaching it takes
# several passes: U4 (1 review) goes, then C falls to 1 review, then U3 falls to 1 review.
# U5 reviews B twice: after dedup it has 1 interaction and goes too.
REVIEWS = [
    ("U2", "B", 20),  # same time as the next line: file order decides, B before A
    ("U2", "A", 20),
    ("U1", "A", 10),
    ("U1", "B", 5),   # earlier time, later line: B comes first for U1
    ("U3", "A", 30),
    ("U3", "C", 31),
    ("U4", "C", 32),
    ("U1", "A", 50),  # a repeat of (U1, A): dropped, the time 10 stays
    ("U5", "B", 40),
    ("U5", "B", 41),
]


def review_lines() -> list[str]:
    return [json.dumps({"reviewerID": u, "asin": a, "overall": 5.0, "unixReviewTime": t,
                        "reviewTime": "01 01, 1970", "reviewText": "fine"}) for u, a, t in REVIEWS]


META_2014 = [  # the 2014 metadata dump: Python literals (single quotes), categories a list of paths
    {"asin": "A", "title": "Fender &amp; Co <b>Strings</b>\n   Set", "brand": "Fender",
     "description": "<p>Bright   tone.</p><br/>Lasts &quot;long&quot;",
     "categories": [["Musical Instruments", "Strings"], ["Musical Instruments", "Guitar"]], "price": 3.5},
    {"asin": "C", "title": "Unused", "categories": [["X"]]},
]
META_2018 = [  # the 2018 dump: JSON, description a list of strings, category one list
    {"asin": "A", "title": "Fender &amp; Co <b>Strings</b>\n   Set", "brand": "Fender",
     "description": ["<p>Bright   tone.</p>", "Lasts &quot;long&quot;"],
     "category": ["Musical Instruments", "Strings", "Guitar"], "main_cat": "Musical Instruments"},
    {"asin": "A", "title": "A repeated line: ignored"},
]


def write(path: Path, lines: list[str], gz: bool = False) -> Path:
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def folder_files(out: Path, name: str) -> dict:
    return {kind: json.loads((out / f"{name}.{kind}.json").read_text())
            for kind in ("inter", "item", "user2id", "item2id", "card")}


def test_kcore_reaches_fixed_point_where_one_pass_does_not():
    rows = [(u, a, t, n) for n, (u, a, t) in enumerate(REVIEWS[:7])]
    one_pass = [r for r in rows if sum(x[0] == r[0] for x in rows) >= 2 and sum(x[1] == r[1] for x in rows) >= 2]
    assert {r[0] for r in one_pass} == {"U1", "U2", "U3"}  # a single pass leaves U3 and C
    kept, passes = kcore(rows, 2)
    assert {(r[0], r[1]) for r in kept} == {("U1", "A"), ("U1", "B"), ("U2", "A"), ("U2", "B")}
    assert passes == 4  # three passes that remove something, one that confirms


@pytest.mark.parametrize("fmt,gz", [("2014", False), ("2014", True), ("2018", False), ("2018", True)])
def test_prepare_both_formats(tmp_path: Path, fmt: str, gz: bool):
    # gzip is recognised by its magic bytes, so the gzipped files keep a plain .json name
    reviews = write(tmp_path / "reviews.json", review_lines(), gz)
    meta_lines = [repr(m) for m in META_2014] if fmt == "2014" else [json.dumps(m) for m in META_2018]
    meta = write(tmp_path / "meta.json", meta_lines, gz)
    out = tmp_path / "out"
    card = prepare_amazon(reviews, meta, out, "Toy", AmazonOptions(kcore=2))
    f = folder_files(out, "Toy")

    assert f["user2id"] == {"U1": 0, "U2": 1}  # sorted raw ids
    assert f["item2id"] == {"A": 0, "B": 1}
    assert f["inter"] == {"0": [1, 0], "1": [1, 0]}  # U1: B(t5) A(t10); U2: tie at t20, file order B, A
    a = f["item"]["0"]
    assert a["title"] == "Fender & Co Strings Set"
    assert a["description"] == 'Bright tone. Lasts "long"'
    assert a["brand"] == "Fender"
    assert a["categories"] == "Musical Instruments, Strings, Guitar"
    assert f["item"]["1"] == {"title": "", "description": "", "brand": "", "categories": ""}  # B: no meta line

    counts = card["counts"]
    assert counts["raw"] == {"users": 5, "items": 3, "interactions": 10}
    assert counts["after_dedup"]["interactions"] == 8  # (U1, A) and (U5, B) repeats
    assert counts["after_kcore"] == {"users": 2, "items": 2, "interactions": 4}
    assert counts["items_without_meta"] == 1
    assert card["preprocessing"]["kcore_passes"] == 4
    assert card["date_range"] == {"first": "1970-01-01", "last": "1970-01-01"}
    assert f["card"] == card
    assert "items without a metadata line (kept, empty text): 1" in (out / "Toy.card.md").read_text()

    data = load_dataset(f"letter:{out}")
    assert (data.n_users, data.n_items, data.n_interactions) == (2, 2, 4)
    assert data.item_text[0]["title"] == "Fender & Co Strings Set" and data.item_text[1]["title"] == ""


def test_clean_text_caps_at_a_word_boundary():
    assert clean_text("alpha beta gamma delta", 13) == "alpha beta"
    assert clean_text(["<i>a</i>", None, "b&amp;c"], 100) == "a b&c"
    assert clean_text(None, 10) == ""
    assert len(clean_text("x" * 50, 20)) == 20


def test_cli_prepare_then_stats(tmp_path: Path):
    reviews = write(tmp_path / "r.json.gz", review_lines(), gz=True)
    meta = write(tmp_path / "m.json", [json.dumps(m) for m in META_2018])
    out = tmp_path / "Toy"
    runner = CliRunner()
    result = runner.invoke(main, ["data", "prepare", "amazon", "--reviews", str(reviews), "--meta", str(meta),
                                  "--out", str(out), "--kcore", "2"])
    assert result.exit_code == 0, result.output
    assert "2 users, 2 items, 4 interactions" in result.output
    stats = runner.invoke(main, ["data", "stats", f"letter:{out}", "--json"])
    assert stats.exit_code == 0, stats.output
    s = json.loads(stats.stdout)
    assert (s["users"], s["items"], s["interactions"]) == (2, 2, 4)
    assert s["users_dropped_by_split"] == 2  # two items each: too short for train/valid/test
    assert s["samples"] == {"train": 0, "valid": 0, "test": 0}
    assert s["item_text"] and s["items_with_text"] == 1


def test_default_5core_drops_everything_here(tmp_path: Path):
    reviews = write(tmp_path / "r.json", review_lines())
    meta = write(tmp_path / "m.json", [json.dumps(m) for m in META_2018])
    with pytest.raises(DataError, match="5-core"):
        prepare_amazon(reviews, meta, tmp_path / "out")


@pytest.mark.parametrize("which,line,bad", [
    ("reviews", 3, '{"reviewerID": "U9", "asin": "A", "unixRev'),   # truncated line
    ("reviews", 3, '{"reviewerID": "U9", "asin": "A"}'),            # no time
    ("reviews", 3, '{"reviewerID": "U9", "asin": "A", "unixReviewTime": "soon"}'),
    ("meta", 2, "{'title': 'no asin'}"),
    ("meta", 2, "[1, 2]"),
])
def test_malformed_lines_name_file_and_line(tmp_path: Path, which: str, line: int, bad: str):
    r = review_lines()
    m = [json.dumps(x) for x in META_2018]
    target = r if which == "reviews" else m
    target.insert(line - 1, bad)
    reviews, meta = write(tmp_path / "r.json", r), write(tmp_path / "m.json", m)
    result = CliRunner().invoke(main, ["data", "prepare", "amazon", "--reviews", str(reviews), "--meta", str(meta),
                                       "--out", str(tmp_path / "out"), "--kcore", "2"])
    assert result.exit_code == 2
    err = result.stderr.strip()
    assert "\n" not in err
    assert f"{'r' if which == 'reviews' else 'm'}.json: line {line}:" in err


def test_truncated_gzip_is_a_data_error(tmp_path: Path):
    full = gzip.compress(("\n".join(review_lines()) + "\n").encode())
    reviews = tmp_path / "r.json.gz"
    reviews.write_bytes(full[: len(full) // 2])
    meta = write(tmp_path / "m.json", [json.dumps(m) for m in META_2018])
    with pytest.raises(DataError, match=r"r\.json\.gz: line \d+: unreadable"):
        prepare_amazon(reviews, meta, tmp_path / "out", opts=AmazonOptions(kcore=2))
