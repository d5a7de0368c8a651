"""The built-in synthetic catalogue: deterministic, no download, and built so that text
carries the category tree while only co-occurrence reveals each item's hidden style."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.datasets.schema import Dataset

_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ze", "po", "da", "fe", "gu", "ha", "ji", "ko"]


@dataclass(frozen=True)
class SyntheticSpec:
    n_items: int = 400
    n_users: int = 1000
    branching: tuple[int, ...] = (4, 4, 4)
    n_styles: int = 6
    n_brands: int = 25
    mean_length: float = 12.0
    max_length: int = 50
    zipf: float = 1.1
    seed: int = 0


def _word(rng: np.random.Generator) -> str:
    return "".join(rng.choice(_SYLLABLES, size=rng.integers(2, 4)))


def make_synthetic(spec: SyntheticSpec = SyntheticSpec()) -> Dataset:
    rng = np.random.default_rng(spec.seed)
    n_leaves = int(np.prod(spec.branching))
    # level l word lists, one small vocabulary per node of the tree
    level_words = [
        [[_word(rng) for _ in range(3)] for _ in range(int(np.prod(spec.branching[: level + 1])))]
        for level in range(len(spec.branching))
    ]
    brands = [_word(rng).capitalize() for _ in range(spec.n_brands)]
    noise = [_word(rng) for _ in range(40)]

    leaf = rng.integers(0, n_leaves, size=spec.n_items)
    style = rng.integers(0, spec.n_styles, size=spec.n_items)
    popularity = 1.0 / np.arange(1, spec.n_items + 1) ** spec.zipf
    popularity = popularity[rng.permutation(spec.n_items)]

    def node(item: int, level: int) -> int:
        return int(leaf[item] // int(np.prod(spec.branching[level + 1 :])))

    item_text = []
    for i in range(spec.n_items):
        words = [level_words[lv][node(i, lv)] for lv in range(len(spec.branching))]
        brand = brands[rng.integers(spec.n_brands)]
        title = f"{brand} {rng.choice(words[-1])} {rng.choice(words[-2])} {rng.choice(noise)} {rng.integers(10, 999)}"
        desc_words = [rng.choice(w) for w in words for _ in range(2)] + list(rng.choice(noise, size=3))
        rng.shuffle(desc_words)
        item_text.append({"title": title, "description": " ".join(desc_words), "brand": brand})

    # candidate sets by tree distance: same leaf, same parent, same root branch, anywhere
    depth = len(spec.branching)
    groups = []
    for lv in (depth - 1, depth - 2, 0):
        nodes = np.array([node(i, lv) for i in range(spec.n_items)])
        members = {n: np.flatnonzero(nodes == n) for n in np.unique(nodes)}
        groups.append([members[n] for n in nodes])
    everything = np.arange(spec.n_items)
    level_p = np.array([0.5, 0.3, 0.15, 0.05])

    sequences = []
    for _ in range(spec.n_users):
        user_style = rng.integers(spec.n_styles)
        length = int(min(spec.max_length, 3 + rng.geometric(1.0 / max(spec.mean_length - 3, 1.0))))
        weights = popularity * np.where(style == user_style, 4.0, 1.0)
        seq = [int(rng.choice(spec.n_items, p=weights / weights.sum()))]
        while len(seq) < length:
            last = seq[-1]
            level = rng.choice(4, p=level_p)
            cand = everything if level == 3 else groups[level][last]
            w = popularity[cand] * np.where(style[cand] == user_style, 4.0, 1.0)
            w = w * np.where(style[cand] == style[last], 2.0, 1.0) * (cand != last)
            if w.sum() <= 0:
                cand, w = everything, popularity * (everything != last)
            seq.append(int(cand[rng.choice(len(cand), p=w / w.sum())]))
        sequences.append(seq)

    return Dataset(
        name="synthetic",
        item_ids=[str(i) for i in range(spec.n_items)],
        user_ids=[str(u) for u in range(spec.n_users)],
        sequences=sequences,
        item_text=item_text,
        source=f"synthetic(n_items={spec.n_items}, n_users={spec.n_users}, seed={spec.seed})",
    )
