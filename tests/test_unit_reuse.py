"""`--reuse-units`: a finished unit of another results folder stands for a unit that would
train exactly the same (data, settings, tokenizer options, seed), under its own label; any
difference, or a unit that does not say what it trained, trains anew."""

import json
import shutil

import pandas as pd
import pytest
from click.testing import CliRunner

from bench.cli import main
from bench.config import preset_config
from bench.runner import Run

from test_protocol import TINY

SETS = [x for k, v in TINY.items() for x in ("--set", f"{k}={v}")]


@pytest.fixture(scope="module")
def main_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reuse") / "main"
    result = CliRunner().invoke(main, ["run", "--tokenizers", "id", "--out", str(out), "--device", "cpu", *SETS])
    assert result.exit_code == 0, result.output
    assert (out / "units" / "id-seed0" / "training.json").is_file()
    return out


def _ablation(out, sources, seeds=(0,)):
    config = preset_config("quick", TINY, dataset="synthetic", tokenizers=["id"], device="cpu", out=str(out),
                           seeds=list(seeds), reuse_units=[str(s) for s in sources])
    config.variants = [{"label": "id-same", "tokenizer": "id", "options": {}, "recipe": {"tau": 1.0}},  # the preset's
                       {"label": "id-tau", "tokenizer": "id", "options": {}, "recipe": {"tau": 0.5}}]
    Run(config, log=lambda m: None).run()
    return out


def _done(out, label, seed=0):
    return json.loads((out / "units" / f"{label}-seed{seed}" / "done").read_text())


def _rows(folder, file, label):
    frame = pd.read_csv(folder / file).query("tokenizer == @label and seed == 0")
    return frame.drop(columns="tokenizer").reset_index(drop=True)


def test_a_row_that_trains_the_same_is_the_other_runs_unit_relabelled(main_run, tmp_path):
    out = _ablation(tmp_path / "ablation", [main_run], seeds=(0, 1))
    assert _done(out, "id-same")["from_unit"] == str(main_run / "units" / "id-seed0")
    for file in ("metrics.csv", "per_user.csv", "history.csv", "rankings.csv"):
        pd.testing.assert_frame_equal(_rows(out, file, "id-same"), _rows(main_run, file, "id"))
    same_codes = (out / "codes" / "id-same-seed0.index.json").read_text()
    assert same_codes == (main_run / "codes" / "id-seed0.index.json").read_text()
    assert "from_unit" not in _done(out, "id-tau")  # another recipe
    assert "from_unit" not in _done(out, "id-same", seed=1)  # a seed the other run lacks
    assert (out / "units" / "id-tau-seed0" / "training.json").is_file()


def test_a_unit_that_does_not_say_what_it_trained_is_not_reused(main_run, tmp_path):
    source = tmp_path / "old"
    shutil.copytree(main_run, source)
    (source / "units" / "id-seed0" / "training.json").unlink()  # a unit from before training.json
    out = _ablation(tmp_path / "ablation", [source])
    assert "from_unit" not in _done(out, "id-same")


def _shuffled_codes(main_run, folder):
    """A copy of the main run whose codes no fit in this process would give (ids permuted)."""
    shutil.copytree(main_run, folder)
    path = folder / "codes" / "id-seed0.index.json"
    index = json.loads(path.read_text())
    path.write_text(json.dumps(dict(zip(index, reversed(list(index.values()))))))
    return folder


def test_rows_with_the_main_runs_tokenizer_settings_take_its_codes(main_run, tmp_path):
    """id-tau trains (another recipe), on the source's codes rather than a fit of its own."""
    source = _shuffled_codes(main_run, tmp_path / "source")
    out = tmp_path / "ablation"
    config = preset_config("quick", TINY, dataset="synthetic", tokenizers=["id"], device="cpu", out=str(out),
                           reuse_units=[str(source)])
    config.variants = [{"label": "id-tau", "tokenizer": "id", "options": {}, "recipe": {"tau": 0.5}}]
    Run(config, log=lambda m: None).run()
    shuffled = (source / "codes" / "id-seed0.index.json").read_text()
    assert (out / "codes" / "id-tau-seed0.index.json").read_text() == shuffled
    assert "from_unit" not in _done(out, "id-tau")


def test_a_unit_on_other_codes_than_this_folders_is_not_reused(main_run, tmp_path):
    """The folder already trained id-tau on its own fit; the source's unit has other codes, so
    id-same trains on this folder's codes: rows of one folder never mix two fits."""
    out = tmp_path / "ablation"
    config = preset_config("quick", TINY, dataset="synthetic", tokenizers=["id"], device="cpu", out=str(out))
    config.variants = [{"label": "id-tau", "tokenizer": "id", "options": {}, "recipe": {"tau": 0.5}}]
    Run(config, log=lambda m: None).run()
    _ablation(out, [_shuffled_codes(main_run, tmp_path / "source")])
    assert "from_unit" not in _done(out, "id-same")
    own = (out / "codes" / "id-tau-seed0.index.json").read_text()
    assert (out / "codes" / "id-same-seed0.index.json").read_text() == own


def test_reuse_units_must_name_a_results_folder(tmp_path):
    result = CliRunner().invoke(main, ["run", "--tokenizers", "id", "--out", str(tmp_path / "x"), "--device", "cpu",
                                       "--reuse-units", str(tmp_path), *SETS])
    assert result.exit_code == 2 and f"--reuse-units {tmp_path}: not a results folder" in result.output
    result = CliRunner().invoke(main, ["tune", "--tokenizers", "id", "--out", str(tmp_path / "t"),
                                       "--reuse-units", str(tmp_path)])
    assert result.exit_code == 2 and "bench tune takes no --reuse-units" in result.output


def test_a_record_made_under_another_default_does_not_match(monkeypatch):
    # a changed default is invisible in the options a run sets; the resolved options show it
    import dataclasses
    from types import SimpleNamespace

    from bench.tokenizers import TOKENIZERS
    from bench.unit_reuse import CODE_KEYS, same_training, training_settings

    config = preset_config("quick", TINY, dataset="synthetic", tokenizers=["random"])
    variant = SimpleNamespace(tokenizer="random", options={"levels": 2}, recipe={})
    before = training_settings(config, variant, 0, "f00d")
    assert before["resolved_options"]["random"]["levels"] == 2 and "codebook_size" in before["resolved_options"]["random"]
    options = TOKENIZERS["random"].Options
    changed = dataclasses.make_dataclass("Changed", [("codebook_size", int, dataclasses.field(default=7))], bases=(options,))
    monkeypatch.setattr(TOKENIZERS["random"], "Options", changed)
    after = training_settings(config, variant, 0, "f00d")
    assert before["tokenizer_options"] == after["tokenizer_options"]  # what the run set is the same
    assert not same_training(before, after) and not same_training(before, after, CODE_KEYS)
    older = {k: v for k, v in before.items() if k != "resolved_options"}  # a record from before they were kept
    assert same_training(older, after) and same_training(before, before)
