"""Collisions as an axis: what a tokenizer does with items whose per-level codes coincide.

One option (`collisions`) for every tokenizer whose codes can collide:
- `suffix`: one more token numbering the items that share a code (TIGER's extra level; with
  `every_item` every item gets it, so all codes have the same length);
- `keep`: leave them identical; decoding ranks a shared code's items at consecutive ranks and
  the code-level metrics (bench/evaluation/metrics.py) score them as LETTER's release does;
- `sinkhorn`: up to `rounds` rounds in which each group of items sharing a code is re-assigned
  on the last level by Sinkhorn over the group's distances to the last codebook (LETTER's and
  LC-Rec's export, generate_indices.py), then what still collides is kept;
- `reassign`: within each group of items sharing all levels but the last, a minimum-cost
  assignment of distinct last-level codes (scipy's linear_sum_assignment on the distances to
  the last codebook), which makes every code unique whenever a prefix holds at most K items;
  the rare items beyond K of one prefix get a numbering token.

`resolve_codes` returns the vocabulary and codes, with the colliding items counted before and
after the re-assignment (before any numbering token), so reports show both."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from bench.tokenizers.base import collision_groups, semantic_codes

COLLISION_POLICIES = ("suffix", "keep", "sinkhorn", "reassign")


@dataclass
class Collisions:
    """Colliding items (n_items - distinct codes) before and after the last-level re-assignment."""

    before: int
    after: int


def n_colliding(levels: np.ndarray) -> int:
    return int(len(levels) - len(np.unique(levels, axis=0))) if len(levels) else 0


def sinkhorn_rounds(levels: np.ndarray, last_costs: np.ndarray | Callable[[list[int]], torch.Tensor],
                    rounds: int = 20, epsilon: float = 0.003, iters: int = 50) -> np.ndarray:
    """LETTER's export: each round re-assigns the last level of every colliding group by the
    argmax of the Sinkhorn plan over the group's rescaled distances [group, K] (`last_costs`:
    all items' distances, or a function giving a group's, as the release computes them per
    group). Earlier levels stay, so a group's distances are fixed and Sinkhorn is
    deterministic: a group already re-assigned would get the same codes again, so it is
    skipped (same result as the release, less work)."""
    from bench.tokenizers.rqvae import rescale_to_unit, sinkhorn

    levels = levels.copy()
    done: set[tuple[int, ...]] = set()
    for _ in range(rounds):
        groups = [g for g in collision_groups([tuple(row) for row in levels.tolist()]) if tuple(g) not in done]
        if not groups:
            break
        for group in groups:
            d = last_costs(group) if callable(last_costs) else torch.as_tensor(last_costs[group], dtype=torch.float32)
            levels[group, -1] = sinkhorn(rescale_to_unit(d), epsilon, iters).argmax(1).cpu().numpy()
            done.add(tuple(group))
    return levels


def reassign_last_level(levels: np.ndarray, last_costs: np.ndarray) -> np.ndarray:
    """Distinct last-level codes within every prefix that has a collision, at the least total
    distance (the Hungarian algorithm; other items of that prefix may move to make room). A
    prefix of more than K items can give distinct codes to K of them; the others keep theirs."""
    levels = levels.copy()
    prefixes: dict[tuple[int, ...], list[int]] = {}
    for item, row in enumerate(levels[:, :-1].tolist()):
        prefixes.setdefault(tuple(row), []).append(item)
    for items in prefixes.values():
        if len(items) < 2 or len(set(levels[items, -1].tolist())) == len(items):
            continue  # no collision under this prefix: nothing moves
        rows, cols = linear_sum_assignment(last_costs[items])  # at most K items get distinct codes
        levels[np.asarray(items)[rows], -1] = cols
    return levels


def resolve_codes(levels: np.ndarray, last_costs: np.ndarray | None, policy: str, codebook_sizes: list[int],
                  every_item: bool = False, rounds: int = 20, epsilon: float = 0.003, iters: int = 50,
                  spell: Callable[[int, int], str] | None = None) -> tuple[list[str], list[tuple[int, ...]], Collisions]:
    """Vocabulary and codes from per-level code indices [n, L] under `policy`. `last_costs`
    [n, K]: each item's distance to every code of the last level (needed by sinkhorn and
    reassign). `every_item`: under suffix every item gets the numbering token (TIGER).
    `spell(level, code)`: token names (default <a_12>; see base.semantic_codes)."""
    if policy not in COLLISION_POLICIES:
        raise ValueError(f"collisions must be one of {COLLISION_POLICIES}, got {policy!r}")
    before = n_colliding(levels)
    if policy in ("sinkhorn", "reassign"):
        if last_costs is None:
            raise ValueError(f"collisions={policy} needs each item's distances to the last level's codes")
        levels = (sinkhorn_rounds(levels, last_costs, rounds, epsilon, iters) if policy == "sinkhorn"
                  else reassign_last_level(levels, last_costs))
    after = n_colliding(levels)
    disambiguation = {"suffix": "suffix", "keep": "keep", "sinkhorn": "keep", "reassign": "suffix"}[policy]
    vocab, codes, _ = semantic_codes(levels, codebook_sizes, disambiguation, every_item and policy == "suffix", spell)
    return vocab, codes, Collisions(before, after)
