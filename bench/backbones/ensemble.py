"""Decoding several encodings of each history and fusing their rankings: the inference
ensemble of context-aware tokenizers (ActionPiece, model.py `generate` in
google-deepmind/action_piece). A tokenizer names its views (`Tokenizer.inference_views`); with
one view this is plain constrained beam search, so every other tokenizer is decoded as before.

Fusion is the release's: in each view's ranking (its whole beam) the item at rank j (from 0) gains
1 / log2(j + 2); items are sorted by their total (ties: first seen). The fused score replaces
the log-probability in `Ranked.scores`. Each history's segmentation draw in a view comes from
its own stream, seeded by (view, sample index), so it does not depend on batching or on how
many processes share the evaluation.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Hashable, Sequence

import numpy as np

from bench.backbones.base import Backbone, Rngs
from bench.backbones.decoding import Ranked, beam_search
from bench.backbones.trie import CodeTrie

VIEW_STREAM = 20250  # first word of every view's seed, apart from the training draws' streams


def view_rngs(view: int | None, indices: Sequence[int]) -> Rngs:
    """One segmentation stream per history of `view` (None: deterministic encodings)."""
    if view is None:
        return None
    return [np.random.default_rng([VIEW_STREAM, view, int(i)]) for i in indices]


def fuse_by_rank(rankings: Sequence[Sequence[Hashable | None]], k: int) -> list[tuple[Hashable, float]]:
    """The k best candidates with their fused scores; None entries (invalid beams) keep their
    rank and gain nothing."""
    score: dict[Hashable, float] = defaultdict(float)
    for ranking in rankings:
        for j, candidate in enumerate(ranking):
            if candidate is not None:
                score[candidate] += 1.0 / math.log2(j + 2)
    return sorted(score.items(), key=lambda kv: kv[1], reverse=True)[:k]


def ensemble_search(backbone: Backbone, trie: CodeTrie, histories: list[list[int]], indices: Sequence[int],
                    views: Sequence[int | None], beam: int, k: int, length_penalty: float = 1.0) -> Ranked:
    """Beam search of every view, fused by rank; one view is returned as it is (with its
    code-level leaves). `indices`: each history's sample index (its segmentation streams)."""
    if len(views) == 1:
        return beam_search(backbone, trie, histories, beam, k, length_penalty, rngs=view_rngs(views[0], indices))
    width = max(k, beam)  # every view's whole beam is fused, as the release's n_return_sequences
    members = [beam_search(backbone, trie, histories, beam, width, length_penalty, rngs=view_rngs(v, indices))
               for v in views]
    items = np.full((len(histories), k), -1, dtype=np.int64)
    scores = np.full((len(histories), k), -np.inf)
    for u in range(len(histories)):
        fused = fuse_by_rank([[int(x) if x >= 0 else None for x in m.items[u]] for m in members], k)
        for j, (item, value) in enumerate(fused):
            items[u, j], scores[u, j] = int(item), value  # type: ignore[call-overload]
    return Ranked(items, scores, sum(m.n_invalid for m in members), None)


__all__ = ["VIEW_STREAM", "ensemble_search", "fuse_by_rank", "view_rngs"]
