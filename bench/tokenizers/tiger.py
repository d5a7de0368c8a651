"""`tiger` (Rajput et al. 2023): RQ-VAE codes over text embeddings, plus a 4th token that
numbers the items sharing a 3-token tuple, so every item's code is distinct (`collisions`:
suffix, TIGER's; or keep, sinkhorn, reassign: bench/tokenizers/collisions.py)."""

from __future__ import annotations

from dataclasses import dataclass

from bench.options import check
from bench.tokenizers.base import FitContext, Tokenizer
from bench.tokenizers.collisions import COLLISION_POLICIES, resolve_codes
from bench.tokenizers.rqvae import (INIT_METHODS, RQVAE_PRESETS, RQVAE, RQVAEConfig, checked_embeddings,
                                    last_level_costs, parse_sizes)
from bench.tokenizers.rqvae_train import SELECT_POLICIES, TrainConfig, train_rqvae


@dataclass
class TigerOptions:
    levels: int = 3  # paper: 3 levels (+ the collision level)
    codebook_size: int = 256  # paper: 256 codes per level
    latent_dim: int = 32  # paper: 32
    hidden: str = "512,256,128"  # paper: encoder 512-256-128, ReLU, mirror decoder
    epochs: int = 100  # paper: 20k epochs on GPU; presets set this (PRESET_OPTIONS)
    batch_size: int = 1024  # paper: 1024
    lr: float = 1e-3  # AdamW 1e-3 as LETTER's release (the TIGER paper used Adagrad, lr 0.4)
    weight_decay: float = 1e-4  # LETTER's release
    beta_commit: float = 0.25  # paper: 0.25
    kmeans_init: bool = True  # paper: k-means initialisation of each codebook
    init: str = "kmeans"  # plain k-means as TIGER describes; `constrained` = LETTER's release
    kmeans_iters: int = 100  # LETTER's release (plain k-means)
    kmeans_restarts: int = 1
    select: str = "collision"  # lowest collision rate (LETTER's release) or `last` epoch
    eval_every: int = 0  # epochs between collision-rate checks for `select`; 0 = epochs // 10
    collisions: str = "suffix"  # TIGER's numbering level on every item; keep, sinkhorn, reassign

    def __post_init__(self) -> None:
        for name in ("levels", "codebook_size", "latent_dim", "epochs", "batch_size", "kmeans_iters", "kmeans_restarts"):
            check(getattr(self, name) >= 1, f"{name} must be >= 1")
        check(self.levels <= 25, "levels must be <= 25 (one token letter per level)")
        check(self.codebook_size >= 2, "codebook_size must be >= 2")
        check(self.lr > 0 and self.weight_decay >= 0 and self.beta_commit >= 0,
              "lr must be > 0, weight_decay and beta_commit >= 0")
        check(self.eval_every >= 0, "eval_every must be >= 0")
        check(self.select in SELECT_POLICIES, f"select must be one of {SELECT_POLICIES}")
        check(self.init in INIT_METHODS, f"init must be one of {INIT_METHODS}")
        check(self.collisions in COLLISION_POLICIES, f"collisions must be one of {COLLISION_POLICIES}")
        parse_sizes(self.hidden)


PRESET_OPTIONS = RQVAE_PRESETS  # the same budget as letter's


class TigerTokenizer(Tokenizer):
    name = "tiger"
    Options = TigerOptions
    needs_text = True

    def fit(self, ctx: FitContext) -> None:
        o: TigerOptions = self.options
        x = checked_embeddings(ctx.text_embeddings(), ctx.data.n_items, "text", self.name)
        sizes = [o.codebook_size] * o.levels
        model = RQVAE(RQVAEConfig(d_in=x.shape[1], hidden=parse_sizes(o.hidden), latent_dim=o.latent_dim,
                                  codebook_sizes=tuple(sizes), beta_commit=o.beta_commit,
                                  kmeans_init=o.kmeans_init, kmeans_iters=o.kmeans_iters, init=o.init,
                                  kmeans_restarts=o.kmeans_restarts))
        train = TrainConfig(epochs=o.epochs, batch_size=o.batch_size, lr=o.lr, weight_decay=o.weight_decay,
                            seed=ctx.seed, device=ctx.device, select=o.select, eval_every=o.eval_every)
        self.history = train_rqvae(model, x, None, train, ctx.log)
        levels = model.encode(x).cpu().numpy()
        costs = last_level_costs(model, x) if o.collisions in ("sinkhorn", "reassign") else None
        self.vocab, self.codes, found = resolve_codes(levels, costs, o.collisions, sizes, every_item=True)
        self.n_collisions, self.collisions_before = found.after, found.before
        ctx.log(f"tiger: {found.before} items share a {o.levels}-token tuple, {found.after} after "
                f"collisions={o.collisions}" + (" (then the numbering level)" if o.collisions == "suffix" else ""))

