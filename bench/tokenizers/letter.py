"""`letter` (Wang et al. 2024, LETTER): the RQ-VAE of `tiger` with 4 levels, a collaborative
loss (alpha) towards CF embeddings, a codebook diversity loss (beta), a Sinkhorn-balanced last
level in training, and an export that re-encodes colliding items with Sinkhorn.

Export, as the release's generate_indices.py: argmin codes at every level; then up to
`export_rounds` rounds in which each group of items sharing a code is re-encoded with Sinkhorn
on the last level (earlier levels stay argmin, so only the last token changes); then the
collision policy (bench/tokenizers/collisions.py): `suffix` (ours, default) adds a numbering
token to items still colliding, `keep` (and `sinkhorn`, whose rounds are already done) leaves
them identical as the official release does, `reassign` gives every prefix's items distinct
last-level codes at the least distance. `n_collisions` counts the items still colliding after
the rounds (and reassign), before any numbering token.

As released (HonghuiBao2000/LETTER): size-constrained k-means initialisation of every codebook
and diversity groups from `k-means-constrained` (rqvae.py), alpha/beta/Sinkhorn settings, model
selection by collision rate. Deviations, each one option away from the release:
- encoder 512-256-128 (TIGER's; release 2048-1024-512-256-128-64: `hidden`);
- text embeddings from all-MiniLM-L6-v2 (release: LLaMA-7B mean-pooled; `--embedding-model`
  or a data set's shipped X.emb-*.npy);
- RQ-VAE epochs per preset (`RQVAE_PRESETS`: 120 at `cpu`; release 20,000: `epochs`);
- colliding items get a numbering token by default (`collisions=keep` is the release);
- CF embeddings: a SASRec trained on the run's training split (the release ships its own,
  of unknown split: `--set data.cf_embeddings=shipped`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.evaluation.cf_neighbours import K_NEIGHBOURS, neighbour_code_sharing
from bench.options import check
from bench.tokenizers.base import FitContext, Tokenizer
from bench.tokenizers.collisions import COLLISION_POLICIES, n_colliding, resolve_codes, sinkhorn_rounds
from bench.tokenizers.kmeans import squared_distances
from bench.tokenizers.rqvae import (INIT_METHODS, RQVAE_PRESETS, RQVAE, RQVAEConfig, checked_embeddings,
                                    last_level_costs, parse_sizes)
from bench.tokenizers.rqvae_train import SELECT_POLICIES, TrainConfig, train_rqvae


@dataclass
class LetterOptions:
    levels: int = 4  # paper: 4 levels
    codebook_size: int = 256  # paper: 256 codes per level
    latent_dim: int = 32  # paper: 32 (= the SASRec hidden size)
    hidden: str = "512,256,128"  # TIGER's encoder (the release uses 2048-1024-512-256-128-64)
    epochs: int = 100  # paper: thousands (release: 20,000) on GPU; presets set this
    batch_size: int = 1024  # paper: 1024
    lr: float = 1e-3  # paper: 1e-3, AdamW
    weight_decay: float = 1e-4  # release: 1e-4
    beta_commit: float = 0.25  # paper: 0.25
    alpha: float = 0.02  # CF loss weight; paper best on Instruments 0.02 (release script: 0.01 Instruments, 0.1 Beauty)
    beta: float = 1e-4  # diversity loss weight; paper and release 1e-4
    n_clusters: int = 10  # paper: K = 10 diversity groups per level
    cluster_min: int = 10  # release: group sizes 10..60
    cluster_max: int = 60
    recon_weight: float = 1.0  # 0 turns the semantic reconstruction loss off (ablations)
    sinkhorn_epsilon: float = 0.003  # release: last level, epsilon 0.003
    sinkhorn_iters: int = 50  # release: 50
    kmeans_init: bool = True  # release: k-means initialisation
    init: str = "constrained"  # release: size-constrained k-means over the catalogue (`kmeans` = TIGER's)
    kmeans_iters: int = 10  # release: KMeansConstrained(max_iter=10, n_init=10)
    kmeans_restarts: int = 10
    select: str = "collision"  # lowest collision rate (release) or `last` epoch
    eval_every: int = 0  # epochs between collision-rate checks; 0 = epochs // 10 (release: 2000 of 20,000)
    export_rounds: int = 20  # release: up to 20 Sinkhorn re-encoding rounds
    collisions: str = "suffix"  # after the Sinkhorn rounds: `keep` (or `sinkhorn`) reproduces the release; reassign

    def __post_init__(self) -> None:
        for name in ("levels", "codebook_size", "latent_dim", "epochs", "batch_size", "kmeans_iters",
                     "n_clusters", "cluster_min", "cluster_max", "sinkhorn_iters", "kmeans_restarts"):
            check(getattr(self, name) >= 1, f"{name} must be >= 1")
        check(self.levels <= 25, "levels must be <= 25 (one token letter per level)")
        check(self.codebook_size >= 2, "codebook_size must be >= 2")
        check(self.cluster_min <= self.cluster_max, "cluster_min must be <= cluster_max")
        check(self.lr > 0 and self.sinkhorn_epsilon > 0, "lr and sinkhorn_epsilon must be > 0")
        for name in ("weight_decay", "beta_commit", "alpha", "beta", "recon_weight", "export_rounds"):
            check(getattr(self, name) >= 0, f"{name} must be >= 0")
        check(self.eval_every >= 0, "eval_every must be >= 0")
        check(self.select in SELECT_POLICIES, f"select must be one of {SELECT_POLICIES}")
        check(self.collisions in COLLISION_POLICIES, f"collisions must be one of {COLLISION_POLICIES}")
        check(self.init in INIT_METHODS, f"init must be one of {INIT_METHODS}")
        parse_sizes(self.hidden)


PRESET_OPTIONS = RQVAE_PRESETS  # the same budget as tiger's


class LetterTokenizer(Tokenizer):
    name = "letter"
    Options = LetterOptions
    needs_text = True

    def inputs(self) -> set[str]:
        """CF embeddings always: the CF loss uses them when alpha > 0, and every variant measures
        on them how often CF neighbours share a level-0 code (diagnostics)."""
        return {"text_embeddings", "cf_embeddings"}

    def fit(self, ctx: FitContext) -> None:
        o: LetterOptions = self.options
        n = ctx.data.n_items
        x = checked_embeddings(ctx.text_embeddings(), n, "text", self.name)
        h = checked_embeddings(ctx.cf_embeddings(), n, "CF", self.name, dim=o.latent_dim) if o.alpha > 0 else None
        sizes = [o.codebook_size] * o.levels
        last = (o.levels - 1,)
        model = RQVAE(RQVAEConfig(
            d_in=x.shape[1], hidden=parse_sizes(o.hidden), latent_dim=o.latent_dim, codebook_sizes=tuple(sizes),
            beta_commit=o.beta_commit, sinkhorn_levels=last, sinkhorn_epsilon=o.sinkhorn_epsilon,
            sinkhorn_iters=o.sinkhorn_iters, alpha_cf=o.alpha, beta_div=o.beta, recon_weight=o.recon_weight,
            n_clusters=o.n_clusters, cluster_min=o.cluster_min, cluster_max=o.cluster_max,
            kmeans_init=o.kmeans_init, kmeans_iters=o.kmeans_iters, init=o.init, kmeans_restarts=o.kmeans_restarts))
        train = TrainConfig(epochs=o.epochs, batch_size=o.batch_size, lr=o.lr, weight_decay=o.weight_decay,
                            seed=ctx.seed, device=ctx.device, select=o.select, eval_every=o.eval_every)
        self.history = train_rqvae(model, x, h, train, ctx.log)
        levels, self.collisions_before = export_codes(model, x, o.export_rounds)
        costs = last_level_costs(model, x) if o.collisions == "reassign" else None
        self.vocab, self.codes, found = resolve_codes(levels, costs, o.collisions, sizes, rounds=0)
        self.n_collisions = found.after  # after the Sinkhorn rounds (and reassign), before a numbering token
        cf = ctx.cf_embeddings() if h is None else h
        self.diagnostics = neighbour_code_sharing(checked_embeddings(cf, n, "CF", self.name), levels[:, 0])
        ctx.log(f"letter: {self.collisions_before} colliding items after argmin, "
                f"{self.n_collisions} after {o.export_rounds} Sinkhorn rounds (policy {o.collisions}); "
                f"{self.diagnostics['cf_neighbours_share_code0']:.1%} of the {K_NEIGHBOURS} CF neighbours share an "
                f"item's level-0 code ({self.diagnostics['random_pairs_share_code0']:.1%} of random pairs)")


def export_codes(model: RQVAE, x: np.ndarray, rounds: int) -> tuple[np.ndarray, int]:
    """Per-level codes [n, L] after the Sinkhorn collision rounds, and the number of
    colliding items (n - distinct codes) before those rounds.

    Each round re-encodes every colliding group as one batch with Sinkhorn on the last level
    (the distance rescaling and balancing are within the group, as in the release). Earlier
    levels stay argmin, so a group's last-level residuals are fixed and Sinkhorn is
    deterministic: a group already re-encoded in an earlier round would get the same codes
    again, so it is skipped (same result as the release, less work)."""
    cfg = model.cfg
    levels = model.encode(x).cpu().numpy()
    last_residual = model.residuals(x)[:, -1]  # [n, D]
    codebook = model.codebooks[-1].detach()
    before = n_colliding(levels)

    def group_costs(group: list[int]):  # per group, as the release computes them
        return squared_distances(last_residual[group], codebook)

    return sinkhorn_rounds(levels, group_costs, rounds, cfg.sinkhorn_epsilon, cfg.sinkhorn_iters), before
