"""SASRec (Kang & McAuley, ICDM 2018): the collaborative signal for LETTER and a reference row.

Model as in the paper: item embedding (scaled by sqrt(d)) plus a learned position embedding,
`n_blocks` causal self-attention blocks (pre-layer-norm, residual, point-wise feed-forward),
dropout, a final layer norm; an item's score is the dot product of the last hidden state with
its (shared) input embedding.

Differences from the paper, on purpose:
- Loss: full-softmax cross-entropy over the catalogue at every position, not binary
  cross-entropy with one sampled negative. It needs no negative sampling (so it is
  deterministic given the seed), is RecBole's default for SASRec, and is the stronger choice
  (Klenitskiy & Vasilev, RecSys 2023); the catalogues here (<= ~20K items) make it cheap.
- Training data: every user's training sequence (`split.train_sequences`, i.e. s[:-2]: the
  validation and test targets are never seen) is cut, from its end, into windows of
  `max_length + 1` items, so every training transition is a target exactly once (the paper
  keeps only the last window of each user, which on short histories of 20 wastes most data).
- Hidden size 32 and history 20 by default: LETTER's latent size and history cap.
Recommendation scores the full catalogue and does not exclude history items, as the generative
models do not either.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from bench.datasets import Dataset, Split
from bench.datasets.split import MAX_HISTORY, Samples
from bench.errors import BenchError
from bench.io import atomic_write, no_progress
from bench.options import check

DEFAULT_CACHE_DIR = Path(".cache/embeddings")


@dataclass(frozen=True)
class Options:
    """Paper values: lr 1e-3, batch 128, 2 blocks, 1 head, dropout 0.2 (MovieLens) / 0.5
    (sparse Amazon sets), d = 50, 200 epochs. Here d = 32 and length 20 follow LETTER."""

    hidden: int = 32
    max_length: int = MAX_HISTORY
    n_blocks: int = 2
    n_heads: int = 1
    dropout: float = 0.2
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 5  # epochs without a better validation NDCG@10 before stopping; 0 = train all epochs
    eval_batch_size: int = 512

    def __post_init__(self) -> None:
        for name in ("hidden", "max_length", "n_blocks", "n_heads", "epochs", "batch_size", "eval_batch_size"):
            check(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        check(self.hidden % self.n_heads == 0, f"hidden ({self.hidden}) must be a multiple of n_heads ({self.n_heads})")
        check(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        check(self.patience >= 0, f"patience must be >= 0, got {self.patience}")


PRESET_OPTIONS: dict[str, Options] = {
    # a few seconds on the 400-item / 1000-user synthetic set
    "quick": Options(epochs=8, patience=0),
    # under a minute on ML-100K on one CPU core (valid NDCG@10 ~0.059 vs ~0.062 after 30 epochs at lr 1e-3)
    "cpu": Options(epochs=10, lr=5e-3, patience=3),
    # the paper's epochs and sparse-data dropout; early stopping on validation is ours
    "paper": Options(epochs=200, dropout=0.5, patience=20),
}


class _Block(nn.Module):
    def __init__(self, hidden: int, n_heads: int, dropout: float):
        super().__init__()
        self.attn_norm = nn.LayerNorm(hidden, eps=1e-8)
        self.attn = nn.MultiheadAttention(hidden, n_heads, dropout=dropout, batch_first=True)
        self.ffn_norm = nn.LayerNorm(hidden, eps=1e-8)
        self.ffn = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, hidden), nn.Dropout(dropout))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.attn_norm(x)
        x = x + self.drop(self.attn(h, h, h, attn_mask=mask, need_weights=False)[0])
        return x + self.ffn(self.ffn_norm(x))


class SASRec(nn.Module):
    """Inputs are item ids + 1 (0 = padding), left-padded to `max_length`."""

    def __init__(self, n_items: int, options: Options = Options()):
        super().__init__()
        self.n_items = n_items
        self.options = options
        d = options.hidden
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.pos_emb = nn.Embedding(options.max_length, d)
        self.emb_drop = nn.Dropout(options.dropout)
        self.blocks = nn.ModuleList(_Block(d, options.n_heads, options.dropout) for _ in range(options.n_blocks))
        self.final_norm = nn.LayerNorm(d, eps=1e-8)
        # std d^-1/2: the sqrt(d)-scaled input has unit scale and initial logits are O(1)
        nn.init.normal_(self.item_emb.weight, std=d ** -0.5)
        nn.init.normal_(self.pos_emb.weight, std=d ** -0.5)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        self.history: list[dict[str, float]] = []  # per epoch: loss, valid_ndcg10 when evaluated
        self.best_epoch = 0

    @property
    def device(self) -> torch.device:
        return self.item_emb.weight.device

    def encode(self, seqs: torch.Tensor) -> torch.Tensor:
        """[B, L] shifted ids -> [B, L, d] hidden states, position t seeing items <= t only."""
        B, L = seqs.shape
        pad = seqs == 0
        x = self.item_emb(seqs) * math.sqrt(self.options.hidden)
        x = x + self.pos_emb(torch.arange(L, device=seqs.device))[None]
        x = self.emb_drop(x) * ~pad[..., None]
        # True = may not attend: the future, and padding (except a position itself, so that
        # all-padding rows still have one key and give no NaN)
        eye = torch.eye(L, dtype=torch.bool, device=seqs.device)
        future = torch.triu(torch.ones(L, L, dtype=torch.bool, device=seqs.device), diagonal=1)
        mask = future[None] | (pad[:, None, :] & ~eye[None])
        mask = mask.repeat_interleave(self.options.n_heads, dim=0)
        for block in self.blocks:
            x = block(x, mask) * ~pad[..., None]
        return self.final_norm(x)

    def scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """[..., d] -> [..., n_items] logits over real items (padding row excluded)."""
        return hidden @ self.item_emb.weight[1:].T

    def item_embeddings(self) -> np.ndarray:
        """[n_items, hidden] float32: the collaborative signal (row i = item id i)."""
        return self.item_emb.weight[1:].detach().cpu().numpy().astype(np.float32)

    @torch.inference_mode()
    def recommend(self, histories: list[list[int]], k: int, batch_size: int | None = None) -> np.ndarray:
        """[n, k] top-k item ids per history by full-catalogue score (history items included)."""
        k = min(k, self.n_items)
        batch_size = batch_size or self.options.eval_batch_size
        was_training = self.training
        self.eval()
        out = []
        for start in range(0, len(histories), batch_size):
            seqs = pad_histories(histories[start:start + batch_size], self.options.max_length).to(self.device)
            out.append(self.scores(self.encode(seqs)[:, -1]).topk(k, dim=-1).indices.cpu().numpy())
        self.train(was_training)
        return np.concatenate(out) if out else np.zeros((0, k), dtype=np.int64)


def pad_histories(histories: list[list[int]], max_length: int) -> torch.Tensor:
    """Last `max_length` items of each history, shifted by +1 and left-padded with 0."""
    out = torch.zeros(len(histories), max_length, dtype=torch.long)
    for row, h in enumerate(histories):
        h = h[-max_length:]
        if h:
            out[row, max_length - len(h):] = torch.as_tensor(h, dtype=torch.long) + 1
    return out


def training_windows(sequences: list[list[int]], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets), each [W, max_length] in shifted ids (0 = padding), left-padded.

    Each sequence is cut from its end into windows of max_length + 1 items; inputs are a
    window's items but the last, targets the same shifted by one. Every transition of every
    sequence is a target exactly once. Callers pass training sequences only.
    """
    inputs, targets = [], []
    for seq in sequences:
        end = len(seq)
        while end > 1:
            start = max(0, end - max_length - 1)
            window = seq[start:end]
            inputs.append(window[:-1])
            targets.append(window[1:])
            end = start + 1
    return pad_histories(inputs, max_length), pad_histories(targets, max_length)


def ndcg_at_k(model: SASRec, samples: Samples, k: int = 10) -> float:
    """Mean NDCG@k of `samples` (one target each) under full-catalogue ranking."""
    if len(samples) == 0:
        return 0.0
    top = model.recommend(samples.histories, k)
    hit = top == np.asarray(samples.targets)[:, None]
    gains = hit / np.log2(np.arange(2, top.shape[1] + 2))[None]
    return float(gains.sum(1).mean())


def train_sasrec(
    split: Split,
    n_items: int,
    options: Options = Options(),
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> SASRec:
    """Fit on `split.train_sequences` only; with patience > 0, keep the epoch with the best
    validation NDCG@10 and stop after `patience` epochs without improvement."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    inputs, targets = training_windows(split.train_sequences, options.max_length)
    if len(inputs) == 0:
        raise BenchError("SASRec: no training sequence has two or more items")
    model = SASRec(n_items, options).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=options.lr, betas=(0.9, 0.98),
                                 weight_decay=options.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    best, best_state, stale = -1.0, None, 0
    bar = tqdm(range(1, options.epochs + 1), desc="SASRec", unit="epoch", disable=no_progress(progress))
    for epoch in bar:
        model.train()
        order = rng.permutation(len(inputs))
        total, count = 0.0, 0
        for start in range(0, len(order), options.batch_size):
            idx = torch.as_tensor(order[start:start + options.batch_size])
            x, y = inputs[idx].to(device), targets[idx].to(device)
            real = y > 0
            logits = model.scores(model.encode(x)[real])
            loss = loss_fn(logits, y[real] - 1)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * int(real.sum())
            count += int(real.sum())
        row = {"epoch": epoch, "loss": total / count}
        if options.patience > 0:
            row["valid_ndcg10"] = ndcg_at_k(model, split.valid, 10)
            if row["valid_ndcg10"] > best:
                best, best_state, stale = row["valid_ndcg10"], copy.deepcopy(model.state_dict()), 0
                model.best_epoch = epoch
            else:
                stale += 1
        else:
            model.best_epoch = epoch
        model.history.append(row)
        bar.set_postfix({k: round(v, 4) for k, v in row.items() if k != "epoch"})
        if log:
            log("SASRec " + " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        if options.patience > 0 and stale >= options.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return model


def _cache_file(data: Dataset, split: Split, options: Options, seed: int, cache_dir: Path | None) -> Path:
    """Keyed by the data, the split (its training sequences and validation samples: what the
    model is fitted and early-stopped on), the options and the seed."""
    h = hashlib.sha256()
    for seq in split.train_sequences:
        h.update(np.asarray(seq, dtype=np.int64).tobytes() + b"|")
    h.update(split.valid.users.tobytes() + split.valid.targets.tobytes())
    key = json.dumps({"data": data.fingerprint(), "split": h.hexdigest()[:16], "options": dataclasses.asdict(options),
                      "seed": seed, "model": "sasrec-v1"}, sort_keys=True)
    return Path(cache_dir or DEFAULT_CACHE_DIR) / f"sasrec-{hashlib.sha256(key.encode()).hexdigest()[:20]}.pt"


def load_or_train_sasrec(
    data: Dataset,
    split: Split,
    options: Options = Options(),
    seed: int = 0,
    device: str = "cpu",
    cache_dir: Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> SASRec:
    """A trained SASRec from the on-disk cache (keyed by data fingerprint, options and seed),
    training and caching it on a miss. Used both for the CF signal and the reference row."""
    path = _cache_file(data, split, options, seed, cache_dir)
    if path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        model = SASRec(data.n_items, options)
        model.load_state_dict(saved["state"])
        model.history, model.best_epoch = saved["history"], saved["best_epoch"]
        return model.to(device).eval()
    model = train_sasrec(split, data.n_items, options, seed, device, progress, log)
    state = {k: v.cpu() for k, v in model.state_dict().items()}
    blob = {"state": state, "history": model.history, "best_epoch": model.best_epoch}
    atomic_write(path, lambda tmp: torch.save(blob, tmp))
    return model


def cf_embeddings(data: Dataset, split: Split, options: Options = Options(), seed: int = 0, shipped: bool = False,
                  **train_options: Any) -> np.ndarray:
    """[n_items, d] float32: the item table of a SASRec trained on the training split by
    `load_or_train_sasrec` (`train_options`: its device, cache_dir, progress, log); with
    `shipped`, the data set's own CF embeddings instead (LETTER's X-32d-sasrec.pt, shape-checked
    by the loader), whose training split is unknown."""
    if shipped:
        if data.cf_embeddings is None:
            raise BenchError(f"{data.source or data.name}: no shipped CF embeddings")
        return np.asarray(data.cf_embeddings, dtype=np.float32)
    return load_or_train_sasrec(data, split, options, seed, **train_options).item_embeddings()
