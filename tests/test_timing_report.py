"""The report's cost per unit: CPU time per stage, over the units that recorded it."""

from __future__ import annotations

import math

import pandas as pd

from bench.reporting.timing import timing_section, unit_costs


def timings(rows: list[tuple[str, int, str, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["tokenizer", "seed", "stage", "seconds", "cpu_seconds"])


def test_cost_per_unit_averages_only_units_with_cpu_time_and_gives_training_per_epoch():
    frame = timings([
        ("all", -1, "data", 2.0, math.nan),
        ("tiger", 0, "tokenizer", 600.0, 60.0), ("tiger", 0, "train", 9000.0, 1200.0), ("tiger", 0, "evaluate", 60.0, 60.0),
        ("tiger", 1, "tokenizer", 90.0, 120.0), ("tiger", 1, "train", 2400.0, 2400.0), ("tiger", 1, "evaluate", 60.0, 60.0),
        # begun before CPU time was kept: its training has none, so the unit is left out
        ("tiger", 2, "tokenizer", 60.0, 60.0), ("tiger", 2, "train", 99999.0, math.nan), ("tiger", 2, "evaluate", 6.0, 6.0),
        ("id", 0, "tokenizer", 1.0, math.nan), ("id", 0, "train", 100.0, math.nan), ("id", 0, "evaluate", 1.0, math.nan),
    ])
    history = pd.DataFrame({"tokenizer": ["tiger"] * 3, "seed": [0, 1, 2], "epoch": [10, 20, 5]})
    costs = unit_costs(frame, history).set_index("row")
    assert list(costs.index) == ["id", "tiger"]  # the tables' fixed order; the shared data stage is not a unit
    tiger = costs.loc["tiger"]
    assert tiger["units measured"] == "2 of 3"
    assert (tiger["tokenizer (min)"], tiger["train (min)"], tiger["evaluate (min)"]) == ("1.5", "30.0", "1.0")
    assert tiger["total (min)"] == "32.5"
    assert tiger["train per epoch (s)"] == "120"  # (1200 / 10 + 2400 / 20) / 2
    assert costs.loc["id", "units measured"] == "0 of 1" and costs.loc["id", "total (min)"] == ""
    text = "\n".join(timing_section(frame, history))
    assert "## Wall time" in text and "## Cost per unit (CPU time)" in text


def test_runs_without_cpu_time_get_the_wall_table_only():
    frame = timings([("id", 0, "train", 100.0, 0.0)]).drop(columns="cpu_seconds")
    text = "\n".join(timing_section(frame))
    assert "## Wall time" in text and "Cost per unit" not in text


def test_units_of_different_machines_get_their_own_rows():
    """CPU time is only comparable on one machine: a tokenizer whose units ran on two gets a row
    per machine (units written before machines were recorded form one more), each with its own mean."""
    frame = timings([("tiger", 0, "train", 100.0, 600.0), ("tiger", 1, "train", 100.0, 1200.0),
                     ("tiger", 2, "train", 100.0, 1300.0), ("id", 0, "train", 100.0, 60.0)])
    frame["machine"] = ["EPYC, 2 cores, AVX512", "EPYC, 2 cores, AVX2", "EPYC, 2 cores, AVX2", None]
    costs = unit_costs(frame)
    rows = {(r["row"], r["machine"]): r for r in costs.to_dict("records")}
    assert set(rows) == {("id", "not recorded"), ("tiger", "EPYC, 2 cores, AVX512"), ("tiger", "EPYC, 2 cores, AVX2")}
    assert rows[("tiger", "EPYC, 2 cores, AVX2")]["train (min)"] == "20.8"  # (1200 + 1300) / 2 / 60
    assert rows[("tiger", "EPYC, 2 cores, AVX512")]["units measured"] == "1 of 1"
    assert "each machine has its own rows" in "\n".join(timing_section(frame))
    one_machine = unit_costs(frame.assign(machine="EPYC, 2 cores, AVX2"))
    assert "machine" not in one_machine.columns and list(one_machine["row"]) == ["id", "tiger"]
