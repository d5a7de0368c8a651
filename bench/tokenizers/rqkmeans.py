"""`rqkmeans`: residual k-means over the item text embeddings, with no encoder to train.

Sources: GRID (Ju et al. 2025, snap-research/GRID: RQ-KMeans, 3 levels x 256 codes) and
OneRec (Deng et al. 2025: balanced k-means at every level, so codes are used evenly).

Level 1 clusters the embeddings; each item's centroid is subtracted; level 2 clusters those
residuals; and so on. As GRID's release (ResidualQuantization, `normalize_residuals: true` in
its RQ-KMeans configs), every level's input, the embedding and each residual, is first scaled
to unit length (`normalize_residuals`, default on). A code is the tuple of per-level cluster
indices, then the collision policy (bench/tokenizers/collisions.py; default `suffix`: every item
gets a numbering token, as TIGER's 4th level, so rqkmeans and tiger have the same code shape).

Choices and deviations:
- clustering by scikit-learn's `KMeans` (k-means++ seeding, Lloyd to convergence; `n_init`
  restarts, `max_iter` iterations, seed `ctx.seed + level`), not GRID's own mini-batch k-means
  (k-means++ on a 3,072-point buffer, then a few mini-batch steps per level), which stops far
  coarser. Neither spreads the deeper levels on ML-100K: with unit-length residuals most
  items fall into a few codes there (level 3: 1,376 of 1,682 items in one code, seed 0) and
  554 items share their 3-level code; scikit-learn's `MiniBatchKMeans` run as GRID's config
  (batches of 2,048, k-means++ on 3,072 points, 8-100 steps a level, no reassignment) leaves
  591-802 such items (seeds 0-1), so Lloyd does not cause the concentration;
- fitted on every catalogue item, as GRID (its items file holds all items): text embeddings
  are item side information, no interaction enters;
- `balanced=True` (OneRec) uses size-constrained k-means (`k-means-constrained`, min-cost
  flow; bench/tokenizers/kmeans.py) with cluster sizes floor(n/K)..ceil(n/K), made feasible by
  `feasible_bounds` (a level of fewer than 2K items gets K = n // 2 clusters of >= 2).
  OneRec's balanced k-means assigns greedily; the constraint is the same, the solver exact.
  An item's residual subtracts the centroid it was assigned, which under the size constraint
  need not be its nearest;
- the embeddings are the bench's text embeddings (GRID: an LLM's; OneRec: multimodal ones);
- a level with fewer distinct points than `codebook_size` (a tiny catalogue) gets one cluster
  per distinct point, and the log says so;
- `sinkhorn` and `reassign` use each item's squared distances from its last residual to the
  last level's centroids (no paper specifies a policy; the default is TIGER's suffix).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from bench.options import check
from bench.tokenizers.base import FitContext, Tokenizer
from bench.tokenizers.collisions import COLLISION_POLICIES, resolve_codes
from bench.tokenizers.kmeans import constrained_kmeans, feasible_bounds, squared_distances
from bench.tokenizers.rqvae import RQVAE_PRESETS, checked_embeddings


@dataclass
class RQKMeansOptions:
    levels: int = 3  # GRID: 3 levels (+ the collision level)
    codebook_size: int = 256  # GRID: 256 codes per level
    n_init: int = 1  # k-means++ restarts per level (scikit-learn's default for k-means++)
    max_iter: int = 300  # iterations per level (scikit-learn's default)
    balanced: bool = False  # OneRec: equal cluster sizes at every level
    normalize_residuals: bool = True  # GRID: each level's input scaled to unit length first
    collisions: str = "suffix"  # see bench/tokenizers/collisions.py

    def __post_init__(self) -> None:
        for name in ("levels", "codebook_size", "n_init", "max_iter"):
            check(getattr(self, name) >= 1, f"{name} must be >= 1")
        check(self.levels <= 25, "levels must be <= 25 (one token letter per level)")
        check(self.codebook_size >= 2, "codebook_size must be >= 2")
        check(self.collisions in COLLISION_POLICIES,
              f"collisions must be one of {COLLISION_POLICIES}, got {self.collisions!r}")


# tiger's code shape per preset (the quick preset's 32 codes for its 400 synthetic items), so
# rqkmeans and tiger differ in how codes are found, not in their shape
SHAPE_OPTIONS = ("levels", "codebook_size")
PRESET_OPTIONS: dict[str, dict[str, object]] = {
    preset: {k: v for k, v in options.items() if k in SHAPE_OPTIONS} for preset, options in RQVAE_PRESETS.items()}


def cluster(x: np.ndarray, k: int, balanced: bool, n_init: int, max_iter: int,
            seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(centres [k', d], labels [n]) of one level: plain k-means, or equal-size k-means
    (k' < k only where `feasible_bounds` needs fewer clusters)."""
    if balanced:
        k, size_min, size_max = feasible_bounds(len(x), k, len(x) // k, -(-len(x) // k))
        centres, labels = constrained_kmeans(x, k, size_min, size_max, max_iter, n_init, seed)
        return centres.astype(np.float64), labels
    from sklearn.cluster import KMeans

    model = KMeans(n_clusters=k, init="k-means++", n_init=n_init, max_iter=max_iter, random_state=seed).fit(x)
    return model.cluster_centers_, np.asarray(model.labels_, dtype=np.int64)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1 (torch.nn.functional.normalize's rule: a zero row stays 0)."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def residual_kmeans(x: np.ndarray, levels: int, codebook_size: int, balanced: bool = False, n_init: int = 1,
                    max_iter: int = 300, seed: int = 0, normalize: bool = False,
                    log: Callable[[str], None] = print) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Per-level codes [n, levels], centres (one [k, d] array per level) and the last level's
    input. Level 0 clusters `x`; level l clusters what levels < l left: its input minus the
    centres of the item's codes. `normalize`: each level's input scaled to unit length first."""
    residual = np.asarray(x, dtype=np.float64)
    codes = np.zeros((len(residual), levels), dtype=np.int64)
    centres: list[np.ndarray] = []
    for level in range(levels):
        if normalize:
            residual = unit_rows(residual)
        level_input = residual
        distinct = len(np.unique(residual, axis=0))
        k = min(codebook_size, distinct)
        level_centres, labels = cluster(residual, k, balanced, n_init, max_iter, seed + level)
        if len(level_centres) < codebook_size:
            log(f"rqkmeans: level {level + 1} has {len(residual)} items, {distinct} distinct points: "
                f"K clamped to {len(level_centres)} (codebook_size {codebook_size})")
        codes[:, level] = labels
        centres.append(level_centres)
        residual = residual - level_centres[labels]
        log(f"rqkmeans: level {level + 1}: {len(level_centres)} clusters, "
            f"mean squared residual {float((residual**2).sum(1).mean()):.4g}")
    return codes, centres, level_input


def last_level_costs(last_input: np.ndarray, centres: list[np.ndarray]) -> np.ndarray:
    """[n, K]: squared distances from each item's last-level input (what that level clustered)
    to every centre of the last level, for `sinkhorn` and `reassign`."""
    costs = squared_distances(torch.as_tensor(last_input), torch.as_tensor(centres[-1]))
    return costs.clamp_min(0).numpy()


class RQKMeansTokenizer(Tokenizer):
    name = "rqkmeans"
    Options = RQKMeansOptions
    needs_text = True

    def __init__(self, argument: str | None = None, **options: Any):
        super().__init__(argument, **options)
        self.centres: list[np.ndarray] = []  # per level [k, d]; not saved

    def fit(self, ctx: FitContext) -> None:
        o: RQKMeansOptions = self.options
        x = checked_embeddings(ctx.text_embeddings(), ctx.data.n_items, "text", self.name)
        levels, self.centres, last_input = residual_kmeans(x, o.levels, o.codebook_size, o.balanced, o.n_init,
                                                           o.max_iter, ctx.seed, o.normalize_residuals, ctx.log)
        sizes = [o.codebook_size] * o.levels
        costs = last_level_costs(last_input, self.centres) if o.collisions in ("sinkhorn", "reassign") else None
        self.vocab, self.codes, c = resolve_codes(levels, costs, o.collisions, sizes, every_item=True)
        self.n_collisions, self.collisions_before = c.after, c.before
        ctx.log(f"rqkmeans: {c.before} colliding items after {o.levels} levels, "
                f"{c.after} after policy {o.collisions}")
