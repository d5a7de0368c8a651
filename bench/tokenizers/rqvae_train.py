"""Training the RQ-VAE of `tiger` and `letter` (DESIGN section 5): AdamW on shuffled batches
of the catalogue, the diversity groups refreshed every epoch, and model selection as LETTER's
release does it (the epoch whose argmin codes collide least, checked every `eval_every`
epochs and at the last), or the last epoch."""

from __future__ import annotations

import copy
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from bench.io import no_progress
from bench.tokenizers.rqvae import RQVAE, collision_rate

SELECT_POLICIES = ("collision", "last")


@dataclass
class TrainConfig:
    epochs: int
    batch_size: int = 1024
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "cpu"
    select: str = "collision"  # lowest collision rate (LETTER's release) or `last`
    eval_every: int = 0  # epochs between collision-rate checks (and always the last); 0 = epochs // 10
    progress: bool = True


def train_rqvae(model: RQVAE, x: np.ndarray, h: np.ndarray | None, cfg: TrainConfig,
                log: Callable[[str], None] | None = None) -> list[dict[str, float]]:
    """AdamW on shuffled batches of the catalogue; returns one log dict per epoch (mean loss
    parts, seconds, collision_rate on evaluated epochs); the selected epoch has `selected`=1."""
    if cfg.select not in SELECT_POLICIES:
        raise ValueError(f"select must be one of {SELECT_POLICIES}, got {cfg.select!r}")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model.to(cfg.device).train()
    X = torch.as_tensor(x, dtype=torch.float32, device=cfg.device)  # [n, d_in]
    H = None if h is None else torch.as_tensor(h, dtype=torch.float32, device=cfg.device)  # [n, D]
    n = len(X)
    if model.cfg.kmeans_init:
        model.init_codebooks(X, cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history: list[dict[str, float]] = []
    best_rate, best_state, best_row = math.inf, None, -1
    eval_every = cfg.eval_every or max(1, cfg.epochs // 10)
    for epoch in tqdm(range(cfg.epochs), desc="rq-vae", disable=no_progress(cfg.progress), leave=False):
        start = time.perf_counter()
        if model.cfg.beta_div > 0:
            model.refresh_groups(cfg.seed + 1000 * epoch)
        sums: dict[str, float] = defaultdict(float)
        for batch in torch.randperm(n, generator=gen).split(cfg.batch_size):
            batch = batch.to(cfg.device)
            out = model(X[batch], None if H is None or model.cfg.alpha_cf == 0 else H[batch], gen)
            opt.zero_grad()
            out.loss.backward()
            opt.step()
            for key, value in out.parts.items():
                sums[key] += value * len(batch) / n
        row = {"epoch": float(epoch), **sums}
        if (epoch + 1) % eval_every == 0 or epoch == cfg.epochs - 1:
            row["collision_rate"] = collision_rate(model.encode(X))
            if cfg.select == "collision" and row["collision_rate"] < best_rate:
                best_rate, best_row = row["collision_rate"], len(history)
                best_state = copy.deepcopy(model.state_dict())
        row["seconds"] = time.perf_counter() - start
        history.append(row)
        if log is not None and (epoch + 1) % max(1, cfg.epochs // 10) == 0:
            log(f"rq-vae epoch {epoch + 1}/{cfg.epochs}: " + ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch"))
    if cfg.select == "collision" and best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_row = len(history) - 1
    if history:
        history[best_row]["selected"] = 1.0
    return history
