"""`bench perf --quick` on a tiny synthetic setup: the table has every row (no timings checked)."""

from click.testing import CliRunner

from bench.cli import main
from bench.perf import prefix_dict
from conftest import shared_path


def test_prefix_dict_lists_allowed_next_tokens():
    allowed = prefix_dict([(5, 6), (5, 7), (8,)], eos=1)
    assert allowed[()] == [5, 8] and allowed[(5,)] == [6, 7] and allowed[(5, 6)] == [1] and allowed[(8,)] == [1]


def test_perf_quick_prints_every_row(tmp_path):
    out = tmp_path / "perf.json"
    result = CliRunner().invoke(main, ["perf", "--quick", "--dataset", "synthetic", "--tokenizer", "id", "--size", "quick",
                                       "--users", "12", "--hf-users", "3", "--batch-size", "16", "--steps", "2",
                                       "--json", str(out)])
    assert result.exit_code == 0, result.output
    for row in ("fp32 matmul [1 thr]", "users/s ours [1 thr]", "users/s generate [1 thr]", "speed ratio ours/generate",
                "top-20 lists identical", "max |score diff|", "samples/s [1 thr]", "GFLOP/s [1 thr]",
                "LETTER s/epoch", "LETTER export", "peak RSS"):
        assert row in result.output, row
    assert "top-20 lists identical" in out.read_text()


def test_perf_times_training_at_each_input_budget():
    result = CliRunner().invoke(main, ["perf", "--quick", "--dataset", "synthetic", "--tokenizer", "text", "--size", "quick",
                                       "--parts", "train", "--batch-size", "8", "--steps", "1", "--input-budgets", "0,20"])
    assert result.exit_code == 0, result.output
    assert "samples/s [1 thr] [input budget none]" in result.output
    assert "samples/s [1 thr] [input budget 20]" in result.output


def test_perf_rejects_bad_input_budgets():
    result = CliRunner().invoke(main, ["perf", "--input-budgets", "0,x"])
    assert result.exit_code == 2 and "input_budgets" in result.output


def test_perf_rejects_unknown_part():
    result = CliRunner().invoke(main, ["perf", "--parts", "eval,nope"])
    assert result.exit_code == 2 and "parts" in result.output


def test_perf_decodes_the_data_sets_own_codes_by_default():
    folder = shared_path("letter", "Instruments")
    result = CliRunner().invoke(main, ["perf", "--quick", "--dataset", f"letter:{folder}", "--size", "quick",
                                       "--parts", "eval", "--users", "4", "--hf-users", "0", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert f"precomputed:{folder}/Instruments.index.json" in result.output
    assert "users/s ours [1 thr]" in result.output


def test_perf_without_codes_asks_for_a_tokenizer():
    result = CliRunner().invoke(main, ["perf", "--quick", "--dataset", "synthetic", "--parts", "eval"])
    assert result.exit_code == 2 and "synthetic ships no index.json" in result.output and "--tokenizer" in result.output


def test_perf_fits_a_tokenizer_that_needs_text_embeddings():
    """TIGER fits on text embeddings: perf provides them as a run does (it once raised 'no text
    embeddings were provided')."""
    result = CliRunner().invoke(main, ["perf", "--quick", "--dataset", "synthetic", "--tokenizer", "tiger", "--size", "quick",
                                       "--parts", "train", "--batch-size", "8", "--steps", "1"])
    assert result.exit_code == 0, result.output
    assert "samples/s [1 thr]" in result.output
