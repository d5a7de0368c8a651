"""Shared fixtures: tiny, seeded data and models so the suite runs in minutes on 2 cores."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.config import T5Size

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

torch.set_num_threads(1)  # tiny models: one thread is fastest and avoids oversubscription

# `--set` values of a run that takes seconds: 60 items, 80 users, a 1+1-layer T5, 2 epochs
TINY_SETS = {"synthetic.n_items": "60", "synthetic.n_users": "80", "recipe.epochs": "2", "recipe.valid_users": "0",
             "t5.d_model": "32", "t5.d_ff": "64", "t5.num_heads": "2", "t5.d_kv": "16", "t5.num_layers": "1",
             "t5.num_decoder_layers": "1", "sasrec.epochs": "1"}


def set_args(sets: dict[str, str]) -> list[str]:
    """`sets` as `bench` command-line options (--set KEY=VALUE ...)."""
    return [x for key, value in sets.items() for x in ("--set", f"{key}={value}")]


@pytest.fixture
def tiny_t5() -> T5Size:
    return T5Size(num_layers=1, num_decoder_layers=1, d_model=32, d_ff=64, num_heads=2, d_kv=16, dropout=0.0)


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return path
