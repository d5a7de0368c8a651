"""The report names the package versions each unit ran with when they differ between units."""

from __future__ import annotations

import pandas as pd

from bench.reporting.software import software_section, software_table
from bench.run_files import versions_text

# written as units write them (run_files.versions_text), read back by the report
OLD = versions_text({"python": "3.11.7", "torch": "2.13.0+cpu", "transformers": "5.24.0", "numpy": "2.4.6"})
NEW = versions_text({"python": "3.11.7", "torch": "2.13.0+cpu", "transformers": "5.25.0", "numpy": "2.4.6"})


def units(software: list[str | None]) -> pd.DataFrame:
    """Two stage rows per unit (tokenizer, seed), and the shared data stage, which is no unit."""
    rows = [("all", -1, "data", None)]
    for i, stamp in enumerate(software):
        rows += [("tiger" if i % 2 else "id", i, stage, stamp) for stage in ("tokenizer", "train")]
    return pd.DataFrame(rows, columns=["tokenizer", "seed", "stage", "software"])


def test_units_under_different_versions_are_listed_with_only_the_packages_that_differ():
    table = software_table(units([OLD, NEW, NEW, None]))
    assert list(table.columns) == ["transformers", "units", "tokenizers"]  # torch, numpy are the same everywhere
    rows = {r["transformers"]: r for r in table.to_dict("records")}
    assert set(rows) == {"5.24.0", "5.25.0", "not recorded"}  # a unit from before versions were recorded
    assert rows["5.25.0"]["units"] == 2 and rows["5.25.0"]["tokenizers"] == "id, tiger"
    assert rows["5.24.0"]["units"] == 1 and rows["not recorded"]["tokenizers"] == "tiger"
    assert "## Software" in "\n".join(software_section(units([OLD, NEW])))
    beside_unrecorded = software_table(units([NEW, None]))  # one set recorded: its versions in full
    assert list(beside_unrecorded.columns) == ["python", "torch", "transformers", "numpy", "units", "tokenizers"]
    assert list(beside_unrecorded["torch"]) == ["2.13.0+cpu", "not recorded"]


def test_one_set_of_versions_or_none_recorded_adds_nothing():
    assert software_table(units([NEW, NEW, NEW])) is None
    assert software_table(units([None, None])) is None
    assert software_section(units([NEW]).drop(columns="software")) == []
    assert software_section(None) == []
