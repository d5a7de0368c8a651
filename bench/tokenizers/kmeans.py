"""k-means for RQ-VAE codebooks: plain (initialisation) and size-constrained (LETTER's
diversity groups).

LETTER's release uses the `k-means-constrained` package (min-cost flow). We keep the
dependency list short with a small greedy version: Lloyd iterations where the assignment
step fills clusters nearest-first up to `size_max`, then tops every cluster up to `size_min`
with the points that are cheapest to move. It always respects the bounds; it is not the exact
optimum of the constrained problem, which the diversity loss does not need.
"""

from __future__ import annotations

import numpy as np
import torch


def squared_distances(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """[n, d], [k, d] -> [n, k] squared Euclidean distances (one matrix product)."""
    return (x**2).sum(1, keepdim=True) - 2 * x @ centres.T + (centres**2).sum(1)[None, :]


@torch.no_grad()
def kmeans(x: np.ndarray | torch.Tensor, k: int, iters: int, seed: int) -> np.ndarray:
    """Centres [k, d] of `x` [n, d]: k-means++ seeding then Lloyd iterations (an empty
    cluster keeps its centre). With no more distinct points than k (a tiny catalogue) the
    centres are points plus a little noise, so every code starts somewhere sensible."""
    x = torch.as_tensor(x, dtype=torch.float32).cpu()
    gen = torch.Generator().manual_seed(seed)
    n = len(x)
    if len(torch.unique(x, dim=0)) <= k:
        pick = torch.randint(n, (k,), generator=gen) if n < k else torch.randperm(n, generator=gen)[:k]
        noise = 1e-3 * (x.std() + 1e-12) * torch.randn(k, x.shape[1], generator=gen)
        return (x[pick] + noise).numpy()
    centres = torch.empty(k, x.shape[1])
    centres[0] = x[torch.randint(n, (1,), generator=gen)]
    d2 = ((x - centres[0]) ** 2).sum(1)  # squared distance to the nearest chosen centre
    for j in range(1, k):
        centres[j] = x[torch.multinomial(d2.clamp_min(0) + 1e-12, 1, generator=gen)]
        d2 = torch.minimum(d2, ((x - centres[j]) ** 2).sum(1))
    for _ in range(iters):
        labels = squared_distances(x, centres).argmin(1)
        counts = torch.bincount(labels, minlength=k)
        sums = torch.zeros_like(centres).index_add_(0, labels, x)
        filled = counts > 0
        new = centres.clone()
        new[filled] = sums[filled] / counts[filled, None]
        if torch.equal(new, centres):
            break
        centres = new
    return centres.numpy()


def feasible_bounds(n: int, k: int, size_min: int, size_max: int) -> tuple[int, int, int]:
    """Clip (k, size_min, size_max) so that n points fit and every group has >= 2 members
    (the diversity loss needs a positive other than the code itself). For 256 codes and the
    paper's K=10, 10..60 they are unchanged; small codebooks (tests, `quick`) get looser bounds."""
    k = max(1, min(k, n // 2))
    size_min = max(min(size_min, n // k), min(2, n))
    size_max = max(size_max, -(-n // k), size_min)
    return k, size_min, size_max


def constrained_assign(dist: np.ndarray, size_min: int, size_max: int) -> np.ndarray:
    """Labels [n] from distances [n, k] with every cluster size in [size_min, size_max]."""
    n, k = dist.shape
    if not (k * size_min <= n <= k * size_max):
        raise ValueError(f"cannot split {n} points into {k} groups of {size_min}..{size_max}")
    labels = np.full(n, -1, dtype=np.int64)
    counts = np.zeros(k, dtype=np.int64)
    # nearest-first filling up to capacity
    for flat in np.argsort(dist, axis=None, kind="stable"):
        i, c = divmod(int(flat), k)
        if labels[i] < 0 and counts[c] < size_max:
            labels[i] = c
            counts[c] += 1
    # top up small clusters with the cheapest points from clusters that can spare one
    while (counts < size_min).any():
        c = int(np.argmin(counts))
        donors = counts[labels] > size_min
        cost = np.where(donors, dist[:, c] - dist[np.arange(n), labels], np.inf)
        i = int(np.argmin(cost))
        counts[labels[i]] -= 1
        labels[i] = c
        counts[c] += 1
    return labels


def size_constrained_kmeans(x: np.ndarray, k: int, size_min: int, size_max: int,
                            iters: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(centres [k, d], labels [n]) with every cluster holding size_min..size_max points."""
    x = np.asarray(x, dtype=np.float64)
    rng = np.random.default_rng(seed)
    centres = x[rng.choice(len(x), size=k, replace=False)]
    labels = np.zeros(len(x), dtype=np.int64)
    for it in range(iters):
        dist = ((x[:, None, :] - centres[None, :, :]) ** 2).sum(-1)  # [n, k]
        new = constrained_assign(dist, size_min, size_max)
        if it > 0 and np.array_equal(new, labels):
            break
        labels = new
        centres = np.stack([x[labels == c].mean(0) for c in range(k)])
    return centres.astype(np.float32), labels
