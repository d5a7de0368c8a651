"""Leave-one-out ranking metrics with one target per user: Recall@K (= hit rate), NDCG@K
(first match, ideal DCG 1) and MRR over the returned list."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.config import KS


def target_ranks(items: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based rank of each user's target in its list [n_users, K], 0 when absent."""
    hits = items == targets[:, None]
    found = hits.any(axis=1)
    return np.where(found, hits.argmax(axis=1) + 1, 0)


def code_target_ranks(leaves: np.ndarray, target_leaves: np.ndarray) -> np.ndarray:
    """1-based rank of each user's target *code* among the finished codes [n_users, beam] (-1 =
    none), 0 when absent: LETTER's release scores this way, so an item that shares its code with
    others counts as found at the code's rank (code-level metrics; item level is target_ranks)."""
    hits = (leaves == target_leaves[:, None]) & (leaves >= 0)
    found = hits.any(axis=1)
    position = np.cumsum(leaves >= 0, axis=1)[np.arange(len(leaves)), hits.argmax(axis=1)]
    return np.where(found, position, 0)


def metric_columns(ks: tuple[int, ...] = KS) -> list[str]:
    return [f"{m}@{k}" for m in ("recall", "ndcg") for k in ks] + ["mrr"]


def per_user_metrics(ranks: np.ndarray, ks: tuple[int, ...] = KS) -> pd.DataFrame:
    ranks = np.asarray(ranks)
    hit = ranks > 0
    gain = np.where(hit, 1.0 / np.log2(ranks + 1.0, where=hit, out=np.ones(len(ranks))), 0.0)
    cols: dict[str, np.ndarray] = {}
    for k in ks:
        cols[f"recall@{k}"] = (hit & (ranks <= k)).astype(float)
    for k in ks:
        cols[f"ndcg@{k}"] = np.where(hit & (ranks <= k), gain, 0.0)
    cols["mrr"] = np.where(hit & (ranks <= max(ks)), 1.0 / np.maximum(ranks, 1), 0.0)
    return pd.DataFrame(cols)


def tidy_means(per_user: pd.DataFrame, ks: tuple[int, ...] = KS) -> list[tuple[str, int, float]]:
    """(metric, k, mean) rows; MRR is reported with k = the largest K (its cut-off)."""
    rows = []
    for col in metric_columns(ks):
        metric, _, k = col.partition("@")
        rows.append((metric, int(k) if k else max(ks), float(per_user[col].mean())))
    return rows


def popularity_ranking(train_counts: np.ndarray, n_users: int, k: int) -> np.ndarray:
    """The same most-popular list (training interactions only, ties by item id) for everyone."""
    order = np.lexsort((np.arange(len(train_counts)), -train_counts))[:k]
    return np.tile(order, (n_users, 1))
