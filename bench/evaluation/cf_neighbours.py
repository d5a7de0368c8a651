"""What LETTER's collaborative loss is meant to do, measured on the codes: items that are close
in the collaborative (CF) embedding should share code prefixes. For each item, the share of
its k nearest neighbours by cosine similarity of CF embeddings that have its level-0 code,
averaged over items; beside it the same share for random pairs of distinct items, which
depends only on how many items each level-0 code holds (sum c(c-1) / n(n-1)). A share well
above the random one means the first level groups collaboratively similar items."""

from __future__ import annotations

import numpy as np

K_NEIGHBOURS = 10


def neighbour_code_sharing(cf: np.ndarray, level0: np.ndarray, k: int = K_NEIGHBOURS,
                           chunk: int = 2048) -> dict[str, float]:
    """{cf_neighbours_share_code0, random_pairs_share_code0} for embeddings [n, d] and
    level-0 codes [n] (k is capped at n - 1; similarities are computed `chunk` rows at a time)."""
    cf = np.asarray(cf, dtype=np.float64)
    level0 = np.asarray(level0)
    n = len(cf)
    if n < 2 or len(level0) != n:
        raise ValueError(f"need at least 2 items and one code per item (got {n} embeddings, {len(level0)} codes)")
    k = min(k, n - 1)
    unit = cf / np.maximum(np.linalg.norm(cf, axis=1, keepdims=True), 1e-12)
    shared = 0.0
    for lo in range(0, n, chunk):
        sims = unit[lo: lo + chunk] @ unit.T
        rows = np.arange(sims.shape[0])
        sims[rows, lo + rows] = -np.inf  # an item is not its own neighbour
        nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        shared += float((level0[nearest] == level0[lo + rows, None]).sum())
    _, counts = np.unique(level0, return_counts=True)
    return {"cf_neighbours_share_code0": shared / (n * k),
            "random_pairs_share_code0": float((counts * (counts - 1)).sum() / (n * (n - 1)))}


__all__ = ["K_NEIGHBOURS", "neighbour_code_sharing"]
