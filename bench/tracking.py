"""Experiment trackers (`--tracker tensorboard|mlflow|wandb`) through accelerate's tracker
classes: one tracker run per unit, named `<label>-seed<N>`, with the unit's settings, its
per-epoch training loss and validation metric, and its final metrics. Offline by default:
files under `<out>/trackers/` and no account or network (wandb runs in offline mode unless
WANDB_MODE says otherwise; mlflow writes a local file store unless MLFLOW_TRACKING_URI is
set). The results folder stays the source of truth; trackers are a view of it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bench.errors import BenchError

TRACKERS = ("tensorboard", "mlflow", "wandb")  # each also the name of the package it needs


def check_trackers(names: list[str]) -> list[str]:
    """Known names whose package is installed, else one line saying what to install."""
    import importlib.util

    for name in names:
        if name not in TRACKERS:
            raise BenchError(f"--tracker {name}: unknown (known: {', '.join(TRACKERS)})")
        if importlib.util.find_spec(name) is None:
            raise BenchError(f"--tracker {name}: the {name} package is not installed (pip install {name})")
    return list(dict.fromkeys(names))


def flat_settings(values: dict[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """A nested config as the scalar key-value pairs every tracker accepts (`recipe.lr`, ...)."""
    out: dict[str, bool | int | float | str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_settings(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        elif value is not None:
            out[name] = json.dumps(value, default=str)
    return out


class UnitTracking:
    """The trackers of one unit; a no-op without names."""

    def __init__(self, names: list[str], logging_dir: Path, run_name: str):
        self.trackers = [_make(name, logging_dir, run_name) for name in names]
        for tracker in self.trackers:
            tracker.start()

    def config(self, values: dict[str, Any]) -> None:
        flat = flat_settings(values)
        for tracker in self.trackers:
            tracker.store_init_configuration(flat)

    def log(self, values: dict[str, Any], step: int | None = None) -> None:
        numbers = {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        for tracker in self.trackers:
            tracker.log(numbers, step=step)

    def finish(self) -> None:
        for tracker in self.trackers:
            tracker.finish()


def _make(name: str, logging_dir: Path, run_name: str) -> Any:
    from accelerate import tracking

    logging_dir.mkdir(parents=True, exist_ok=True)
    if name == "tensorboard":
        return tracking.TensorBoardTracker(run_name, logging_dir)
    if name == "mlflow":
        import mlflow

        if "MLFLOW_TRACKING_URI" not in os.environ:  # offline: a file store in the results folder
            mlflow.set_tracking_uri((logging_dir / "mlruns").resolve().as_uri())
        return tracking.MLflowTracker(experiment_name="bench", logging_dir=str(logging_dir), run_name=run_name)
    return tracking.WandBTracker("bench", name=run_name, dir=str(logging_dir),
                                 mode=os.environ.get("WANDB_MODE", "offline"), reinit="finish_previous")
