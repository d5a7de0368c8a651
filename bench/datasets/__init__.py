"""Data sets by spec: `name` or `name:PATH`."""

from __future__ import annotations

from typing import Callable

from bench.datasets.letter import load_letter
from bench.datasets.movielens import load_ml100k, load_ml1m
from bench.datasets.schema import Dataset
from bench.datasets.split import Samples, Split, leave_one_out, make_split, temporal_split
from bench.datasets.synthetic import SyntheticSpec, make_synthetic
from bench.errors import BenchError

# name -> (loader taking the PATH part, needs a path)
DATASETS: dict[str, tuple[Callable[[str], Dataset], bool]] = {
    "ml-100k": (load_ml100k, True),
    "ml-1m": (load_ml1m, True),
    "letter": (load_letter, True),
}


def load_dataset(spec: str, synthetic: SyntheticSpec | None = None) -> Dataset:
    """`synthetic` uses the preset's size; every other name needs `:PATH`."""
    name, _, path = spec.partition(":")
    if name == "synthetic":
        if path:
            raise BenchError(f"--dataset synthetic takes no path (got {spec!r})")
        data = make_synthetic(synthetic or SyntheticSpec())
    elif name in DATASETS:
        loader, needs_path = DATASETS[name]
        if needs_path and not path:
            raise BenchError(f"--dataset {name} needs a folder: {name}:PATH")
        data = loader(path)
    else:
        known = ", ".join(["synthetic", *DATASETS])
        raise BenchError(f"unknown data set {name!r} (known: {known})")
    data.validate()
    return data


__all__ = ["DATASETS", "Dataset", "Samples", "Split", "SyntheticSpec", "leave_one_out", "load_dataset", "make_split",
           "make_synthetic", "temporal_split"]
