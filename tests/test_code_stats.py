"""Code-usage statistics on hand-made indexes with known answers, and `bench codes stats`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from bench.cli import main
from bench.errors import BenchError, DataError
from bench.evaluation.code_stats import code_stats, gini, load_index, run_code_stats, stats_frame

# level 0: codes 0,0,1,1 (even); level 1: codes 0,1,0,0; items c and d share the whole code
INDEX = {
    "a": ["<a_0>", "<b_0>"],
    "b": ["<a_0>", "<b_1>"],
    "c": ["<a_1>", "<b_0>"],
    "d": ["<a_1>", "<b_0>"],
}


def test_collisions_and_levels_of_a_hand_made_index():
    s = code_stats(INDEX)
    assert (s["n_items"], s["n_unique"], s["max_group"]) == (4, 3, 2)
    assert s["collision_rate"] == pytest.approx(0.25)
    l0, l1 = s["levels"]
    assert (l0["level"], l0["codebook_size"], l0["used"]) == (0, 2, 2)
    assert l0["entropy"] == pytest.approx(math.log(2))
    assert l0["normalized_entropy"] == pytest.approx(1.0)
    assert l0["perplexity"] == pytest.approx(2.0)
    assert l0["gini"] == pytest.approx(0.0)
    assert l1["entropy"] == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert l1["perplexity"] == pytest.approx(math.exp(l1["entropy"]))
    assert l1["gini"] == pytest.approx(0.25)  # counts [3, 1]


def test_codebook_size_override_counts_unused_codes():
    l0 = code_stats(INDEX, codebook_size=4)["levels"][0]
    assert (l0["codebook_size"], l0["used"]) == (4, 2)
    assert l0["normalized_entropy"] == pytest.approx(math.log(2) / math.log(4))
    assert l0["gini"] == pytest.approx(0.5)  # counts [2, 2, 0, 0]
    with pytest.raises(BenchError, match="smaller"):
        code_stats(INDEX, codebook_size=1)


def test_codebook_size_is_max_code_plus_one():
    s = code_stats({"x": ["<a_0>"], "y": ["<a_7>"]})
    assert (s["levels"][0]["codebook_size"], s["levels"][0]["used"]) == (8, 2)


def test_gini_uniform_is_zero_and_one_code_is_maximal():
    assert gini(np.full(10, 3)) == pytest.approx(0.0)
    assert gini(np.array([0, 0, 0, 5])) == pytest.approx(0.75)
    assert gini(np.array([4])) == 0.0


def test_id_and_text_tokens_use_positions_as_levels():
    ids = code_stats({str(i): [f"<item_{i}>"] for i in range(5)})
    assert (ids["n_unique"], ids["collision_rate"]) == (5, 0.0)
    assert ids["levels"][0]["used"] == 5 and ids["levels"][0]["normalized_entropy"] == pytest.approx(1.0)
    text = code_stats({"a": ["gu", "itar"], "b": ["gu", "n"], "c": ["drum"], "d": ["drum"]})
    assert (text["n_unique"], text["max_group"]) == (3, 2)
    assert [lv["used"] for lv in text["levels"]] == [2, 2]  # level 1 counts only a and b


def test_suffix_level_counts_only_items_that_have_it():
    s = code_stats({"a": ["<a_0>", "<b_0>"], "b": ["<a_0>", "<b_1>"], "c": ["<a_1>"]})
    assert len(s["levels"]) == 2 and s["levels"][1]["used"] == 2 and s["n_unique"] == 3


def test_stats_frame_has_one_row_per_level():
    frame = stats_frame(code_stats(INDEX))
    assert list(frame["level"]) == [0, 1]
    assert (frame["n_unique"] == 3).all() and frame["usage"].tolist() == [1.0, 1.0]


def test_bad_files_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_index(tmp_path / "missing.index.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_index(tmp_path / "bad.json")
    (tmp_path / "shape.json").write_text(json.dumps({"a": "<a_1>"}))
    with pytest.raises(DataError, match="item 'a'"):
        load_index(tmp_path / "shape.json")


def test_run_code_stats_reads_every_codes_file(tmp_path):
    (tmp_path / "codes").mkdir()
    (tmp_path / "codes" / "letter-seed0.index.json").write_text(json.dumps(INDEX))
    (tmp_path / "codes" / "id-seed1.index.json").write_text(json.dumps({"a": ["<item_0>"], "b": ["<item_1>"]}))
    (tmp_path / "codes" / "letter-seed0.index.state.json").write_text(json.dumps({"n_collisions": 2, "vocab": []}))
    frame = run_code_stats(tmp_path)
    assert frame[["tokenizer", "seed"]].drop_duplicates().values.tolist() == [["id", 1], ["letter", 0]]
    assert len(frame) == 3
    before = frame.groupby("tokenizer")["collisions_before_unique"].first()
    assert before["letter"] == 2 and np.isnan(before["id"])  # no saved state: unknown, not 0


def test_cli_prints_json_and_table(tmp_path):
    path = tmp_path / "x.index.json"
    path.write_text(json.dumps(INDEX))
    result = CliRunner().invoke(main, ["codes", "stats", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == json.loads(json.dumps(code_stats(INDEX)))
    result = CliRunner().invoke(main, ["codes", "stats", str(path), "--codebook-size", "4"])
    assert result.exit_code == 0 and "colliding 1" in result.output and "normalized_entropy" in result.output
    result = CliRunner().invoke(main, ["codes", "stats", str(tmp_path / "nope.json")])
    assert result.exit_code == 2 and "no such file" in result.output and "Traceback" not in result.output


def test_codebook_sizes_from_the_vocabulary_count_unused_top_codes():
    from bench.evaluation.code_stats import code_stats, vocab_codebook_sizes

    vocab = [f"<a_{i}>" for i in range(4)] + [f"<b_{i}>" for i in range(8)]
    assert vocab_codebook_sizes(vocab) == [4, 8]
    assert vocab_codebook_sizes(["<item_1>", "x"]) is None
    index = {"0": ["<a_0>", "<b_0>"], "1": ["<a_1>", "<b_1>"]}
    stats = code_stats(index, [4, 8])
    assert [lv["codebook_size"] for lv in stats["levels"]] == [4, 8]
    assert stats["levels"][1]["used"] == 2 and abs(stats["levels"][1]["normalized_entropy"] - 1 / 3) < 1e-12
