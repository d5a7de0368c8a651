"""The report's time section: wall time per stage, and the cost of a unit in CPU time.

Wall time says how long the run took on its machine; it also counts waiting for a core and
pauses, so it compares tokenizers only when every unit ran under the same load. The cost per
unit is CPU time (core-minutes, `bench.stage_clock`), which does not depend on the load: it
is what the report compares tokenizers by. Units begun before CPU time was recorded have none
and are left out of that table (it says how many units each mean is over)."""

from __future__ import annotations

import pandas as pd

from bench.reporting import plots
from bench.reporting.format import md_table


def _ordered(names: list[str]) -> list[str]:
    """The tables' fixed row order, after the stages the run shares (tokenizer `all`)."""
    return [t for t in names if t == "all"] + plots.row_order([t for t in names if t != "all"])


def wall_table(timings: pd.DataFrame) -> pd.DataFrame:
    stages = list(dict.fromkeys(timings["stage"]))
    table = timings.pivot_table(index="tokenizer", columns="stage", values="seconds", aggfunc="sum", sort=False)
    table = table.reindex(index=_ordered([str(t) for t in table.index]), columns=stages)
    table = table.rename(index={"all": "(shared)"})
    table["total"] = table.sum(axis=1)
    table.loc["total"] = table.sum(axis=0)
    out = table.map(lambda v: "" if pd.isna(v) else f"{v:.1f}")
    out.insert(0, "tokenizer \\ stage", out.index)  # a stage may itself be called `tokenizer`
    return out


def unit_costs(timings: pd.DataFrame, history: pd.DataFrame | None = None) -> pd.DataFrame | None:
    """Per tokenizer: mean CPU minutes per unit by stage and in total, over the units whose every
    stage has a CPU time, and the training CPU seconds per epoch where history.csv has epochs.
    When the units ran on several machines, one row per tokenizer and machine: CPU time is not
    comparable between them (units from before machines were recorded count as one more)."""
    if "cpu_seconds" not in timings.columns:
        return None
    units = timings[timings["tokenizer"] != "all"].copy()
    if units.empty:
        return None
    recorded = units["machine"] if "machine" in units.columns else pd.Series("", index=units.index)
    units["machine"] = recorded.fillna("").astype(str).replace("", "not recorded")
    per_unit = units.pivot_table(index=["tokenizer", "seed"], columns="stage", values="cpu_seconds", aggfunc="sum",
                                 sort=False, dropna=False)
    grouped = units.groupby(["tokenizer", "seed"], sort=False)
    complete = grouped["cpu_seconds"].apply(lambda c: c.notna().all())
    machine_of = grouped["machine"].first()
    several = machine_of.nunique() > 1
    stages = [c for c in dict.fromkeys(units["stage"]) if c in per_unit.columns]
    rows = []
    for name in _ordered([str(t) for t in units["tokenizer"].unique()]):
        mine = [k for k in complete.index if k[0] == name]
        for machine in dict.fromkeys(machine_of[k] for k in mine) if several else [None]:
            keys = [k for k in mine if machine is None or machine_of[k] == machine]
            measured = [k for k in keys if complete[k]]
            row: dict[str, object] = {"row": name, **({"machine": machine} if several else {}),
                                      "units measured": f"{len(measured)} of {len(keys)}"}
            part = per_unit.loc[measured, stages] / 60 if measured else None
            for stage in stages:
                row[f"{stage} (min)"] = "" if part is None or part[stage].isna().all() else f"{part[stage].mean():.1f}"
            row["total (min)"] = "" if part is None else f"{part.sum(axis=1).mean():.1f}"
            row["train per epoch (s)"] = _per_epoch(per_unit, measured, history)
            rows.append(row)
    return pd.DataFrame(rows)


def _per_epoch(per_unit: pd.DataFrame, measured: list[tuple], history: pd.DataFrame | None) -> str:
    if not measured or history is None or "train" not in per_unit.columns or "epoch" not in history.columns:
        return ""
    epochs = history.groupby(["tokenizer", "seed"])["epoch"].max()
    rates = [per_unit.loc[k, "train"] / epochs[k] for k in measured if k in epochs.index and epochs[k] > 0]
    return f"{sum(rates) / len(rates):.0f}" if rates else ""


def timing_section(timings: pd.DataFrame | None, history: pd.DataFrame | None = None) -> list[str]:
    if timings is None or timings.empty:
        return []
    lines = ["## Wall time (seconds, summed over seeds)", "", md_table(wall_table(timings)), ""]
    costs = unit_costs(timings, history)
    if costs is not None:
        lines += ["## Cost per unit (CPU time)", "",
                  "Core-minutes per unit (one tokenizer, one seed), mean over the units that recorded CPU time; "
                  "unlike wall time it does not depend on how busy the machine was. Training per epoch: CPU "
                  "seconds of training divided by the unit's epochs." + (
                      " CPU time compares only units of one machine, so when units ran on several each machine "
                      "has its own rows." if "machine" in costs.columns else ""), "", md_table(costs), ""]
    return lines
