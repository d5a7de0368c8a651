"""Clustering for RQ-VAE codebooks, through libraries: plain k-means (scikit-learn; TIGER's
initialisation) and size-constrained k-means (`k-means-constrained`, min-cost flow; what
LETTER's release uses for its initialisation and its diversity groups)."""

from __future__ import annotations

import numpy as np
import torch


def squared_distances(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """[n, d], [k, d] -> [n, k] squared Euclidean distances (one matrix product)."""
    return (x**2).sum(1, keepdim=True) - 2 * x @ centres.T + (centres**2).sum(1)[None, :]


def _too_few_points(x: np.ndarray, k: int, seed: int) -> np.ndarray | None:
    """With no more distinct points than k (a tiny catalogue) the centres are points plus a
    little noise, so every code starts somewhere sensible; None when clustering is possible."""
    if len(np.unique(x, axis=0)) > k:
        return None
    rng = np.random.default_rng(seed)
    pick = rng.integers(len(x), size=k) if len(x) < k else rng.permutation(len(x))[:k]
    noise = 1e-3 * (x.std() + 1e-12) * rng.standard_normal((k, x.shape[1]))
    return (x[pick] + noise).astype(np.float32)


def kmeans(x: np.ndarray | torch.Tensor, k: int, iters: int, seed: int, restarts: int = 1) -> np.ndarray:
    """Centres [k, d] of `x` [n, d]: scikit-learn's k-means++ seeding and Lloyd iterations."""
    from sklearn.cluster import KMeans

    x = np.asarray(torch.as_tensor(x, dtype=torch.float32).cpu().numpy(), dtype=np.float64)
    tiny = _too_few_points(x, k, seed)
    if tiny is not None:
        return tiny
    model = KMeans(n_clusters=k, n_init=restarts, max_iter=iters, random_state=seed).fit(x)
    return model.cluster_centers_.astype(np.float32)


def init_bounds(n: int, k: int) -> tuple[int, int]:
    """LETTER's initialisation bounds (RQ-VAE/models/vq.py): size_min = min(n // (2k), 50),
    size_max = 4 x size_min. For 256 codes: n // 512, so n >= 512 items are needed."""
    size_min = min(n // (2 * k), 50)
    return size_min, 4 * size_min


def constrained_kmeans(x: np.ndarray | torch.Tensor, k: int, size_min: int, size_max: int, iters: int = 10,
                       restarts: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(centres [k, d], labels [n]) with every cluster holding size_min..size_max points:
    `k_means_constrained.KMeansConstrained` (LETTER's release: 10 iterations x 10 restarts)."""
    from k_means_constrained import KMeansConstrained

    x = np.asarray(torch.as_tensor(x, dtype=torch.float32).cpu().numpy(), dtype=np.float64)
    if not (k * size_min <= len(x) <= k * size_max):
        raise ValueError(f"cannot split {len(x)} points into {k} groups of {size_min}..{size_max}")
    size_max = min(size_max, len(x))  # the library refuses a bound above n (same constraint)
    model = KMeansConstrained(n_clusters=k, size_min=size_min, size_max=size_max, max_iter=iters, n_init=restarts,
                              random_state=seed).fit(x)
    return model.cluster_centers_.astype(np.float32), np.asarray(model.labels_, dtype=np.int64)


def init_centres(x: np.ndarray | torch.Tensor, k: int, method: str, iters: int, restarts: int, seed: int) -> np.ndarray:
    """A codebook's starting centres: `kmeans` (TIGER) or `constrained` (LETTER's release,
    bounds from `init_bounds`). A catalogue too small for the release's bounds (fewer than 2k
    items, e.g. tests) falls back to plain k-means."""
    x = np.asarray(torch.as_tensor(x, dtype=torch.float32).cpu().numpy())
    size_min, size_max = init_bounds(len(x), k)
    if method == "constrained" and size_min >= 1 and _too_few_points(x, k, seed) is None:
        return constrained_kmeans(x, k, size_min, size_max, iters, restarts, seed)[0]
    return kmeans(x, k, iters, seed, restarts)


def feasible_bounds(n: int, k: int, size_min: int, size_max: int) -> tuple[int, int, int]:
    """Clip (k, size_min, size_max) so that n points fit and every group has >= 2 members
    (the diversity loss needs a positive other than the code itself). For 256 codes and the
    paper's K=10, 10..60 they are unchanged; small codebooks (tests, `quick`) get looser bounds."""
    k = max(1, min(k, n // 2))
    size_min = max(min(size_min, n // k), min(2, n))
    size_max = max(size_max, -(-n // k), size_min)
    return k, size_min, size_max
