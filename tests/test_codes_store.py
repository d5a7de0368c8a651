"""A search's trials share one fit of the codes, and so does the `--tuned` run's tuning-seed
unit (bench/codes_store.py). The fit is made unrepeatable here (every call draws new codes),
as it is between machines: only the store keeps the trials on one tokenizer."""

import dataclasses
import itertools
import json
import shutil

import pytest
from filelock import FileLock, Timeout

from bench.codes_store import entry, lock_path, store_lock, stored_codes
from bench.config import preset_config
from bench.reporting.protocol import settings_rows
from bench.runner import CHECKPOINT, Run
from bench.tokenizers import random_codes
from bench.tuning import load_tuned, tune

from test_protocol import TINY


def _unrepeatable(monkeypatch, first: int):
    """The random tokenizer's fit draws other codes on every call, whatever its seed."""
    calls = itertools.count(first)
    fit = random_codes.RandomTokenizer.fit
    monkeypatch.setattr(random_codes.RandomTokenizer, "fit",
                        lambda self, ctx: fit(self, dataclasses.replace(ctx, seed=next(calls))))


@pytest.fixture
def unrepeatable_fit(monkeypatch):
    _unrepeatable(monkeypatch, 200)


def _codes(path):
    return path.read_bytes()


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    config = preset_config("quick", TINY, dataset="synthetic", tokenizers=["random"], device="cpu")
    out = tmp_path_factory.mktemp("store") / "search"
    with pytest.MonkeyPatch.context() as monkeypatch:
        _unrepeatable(monkeypatch, 100)
        tune(config, {"recipe.lr": [1e-3, 3e-3]}, out, log=lambda m: None)
    return config, out


def _tuned_run(search, tmp_path, seeds, **fields):
    _, out = search
    run = preset_config("quick", TINY, dataset="synthetic", tokenizers=["random"], device="cpu", seeds=seeds,
                        out=str(tmp_path / "run"), **fields)
    run.tuned = load_tuned(out, run)
    return run


def test_every_trial_of_a_search_trains_on_the_codes_of_one_fit(search):
    _, out = search
    stored = entry(out, "random", 0)
    trials = sorted((out / "trials").glob("random-*/codes/random-seed0.index.json"))
    assert len(trials) == 2 and stored.with_suffix(".training.json").exists()
    assert all(_codes(t) == _codes(stored) for t in trials)
    assert all(_codes(t.with_suffix(".state.json")) == _codes(stored.with_suffix(".state.json")) for t in trials)


def test_the_tuned_runs_tuning_seed_takes_the_searchs_codes_and_other_seeds_fit_their_own(search, tmp_path,
                                                                                       unrepeatable_fit):
    """Even where the chosen trial's model cannot be taken (its checkpoint is gone, as when a
    search's folders came from another machine), the tuning seed trains on the search's codes."""
    _, out = search
    for checkpoint in (out / "trials").glob(f"*/units/*/{CHECKPOINT}"):
        checkpoint.unlink()
    run = _tuned_run(search, tmp_path, [0, 1])
    logs: list[str] = []
    folder = Run(run, log=logs.append).run()
    assert _codes(folder / "codes" / "random-seed0.index.json") == _codes(entry(out, "random", 0))
    assert any("random seed 0: the codes of" in line for line in logs)
    assert not entry(out, "random", 1).exists()  # a --tuned run reads the search's store, never adds to it
    fitted = json.loads((folder / "codes" / "random-seed1.index.json").read_text())
    assert fitted != json.loads(_codes(entry(out, "random", 0)))
    assert "| codes of seed 0 |" in (folder / "report.md").read_text()  # the report says so, and checks it
    config = json.loads((folder / "config.json").read_text())
    assert settings_rows(config, folder)[0]["codes of seed 0"] == "the search's"
    shutil.copyfile(folder / "codes" / "random-seed1.index.json", folder / "codes" / "random-seed0.index.json")
    assert "OTHER" in settings_rows(config, folder)[0]["codes of seed 0"]


def test_a_row_that_must_fit_here_never_takes_the_searchs_codes(search, tmp_path, unrepeatable_fit):
    """A collision table's rows share one quantiser fitted in their folder (reusable False)."""
    config, out = search
    row = {"label": "random-here", "tokenizer": "random", "options": config.options_for("random"), "recipe": {}}
    run = _tuned_run(search, tmp_path, [0], variants=[{**row, "reusable": False}])
    folder = Run(run, log=lambda m: None).run()
    assert _codes(folder / "codes" / "random-here-seed0.index.json") != _codes(entry(out, "random", 0))


def test_an_entry_is_taken_only_with_the_same_code_settings_and_once_complete(search, tmp_path):
    out = tmp_path / "copy"  # this test removes a file: a copy of the search's store
    shutil.copytree(search[1] / "codes", out / "codes")
    settings = json.loads(entry(out, "random", 0).with_suffix(".training.json").read_text())
    assert stored_codes([out], "random", settings) == entry(out, "random", 0)
    other = {**settings, "tokenizer_options": {"random": {"levels": 7}}}
    assert stored_codes([out], "random", other) is None
    other_recipe = {**settings, "recipe": {**settings["recipe"], "lr": 0.5}}  # the recipe is not a code setting
    assert stored_codes([out], "random", other_recipe) == entry(out, "random", 0)
    entry(out, "random", 0).with_suffix(".training.json").unlink()  # written last: without it, an unfinished entry
    assert stored_codes([out], "random", settings) is None


def test_the_store_lock_keeps_other_processes_out_while_held(tmp_path):
    config = preset_config("quick", TINY, dataset="synthetic", codes_store=str(tmp_path))
    path = lock_path(tmp_path, "random", 0)
    with store_lock(config, "random", 0):
        with pytest.raises(Timeout):
            FileLock(str(path), timeout=0).acquire()
    FileLock(str(path), timeout=0).acquire()  # released with the block
