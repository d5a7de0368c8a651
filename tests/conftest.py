"""Shared fixtures: tiny, seeded data and models so the suite runs in minutes on 2 cores."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.config import T5Size

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

torch.set_num_threads(1)  # tiny models: one thread is fastest and avoids oversubscription


@pytest.fixture
def tiny_t5() -> T5Size:
    return T5Size(num_layers=1, num_decoder_layers=1, d_model=32, d_ff=64, num_heads=2, d_kv=16, dropout=0.0)


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return path
