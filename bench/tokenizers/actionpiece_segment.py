"""ActionPiece's segmentation side (Hou et al., ICML 2025; google-deepmind/action_piece,
genrec/models/ActionPiece/core.py and model.py): how a sequence of feature sets becomes tokens
with a learnt `Vocabulary` (actionpiece_core.py), deterministically (the release's targets) or by
set permutation regularisation (its training inputs and inference-ensemble members); decoding
tokens back to an item; item features; segmentation statistics. The inference ensemble's
rank fusion is the decoder's (bench/backbones/ensemble.py).
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np

from bench.tokenizers.actionpiece_core import (Item, Pair, Slots, Vocabulary, _as_sets, _merge_inside, _merge_sets,
                                               _merge_with_slot, _pair, _scale, _tidy)


def _segment_structured(sequence: Sequence[Item], vocab: Vocabulary) -> list[int]:
    """Apply, one at a time, the applicable rule of highest score: count * 2/|A| inside a set,
    count / (|A||B|) between two sets, count / |A| between a set and a slot; a tie goes to the
    first found, scanning set i, then slot i with set i and set i+1 (or set i with set i+1)."""
    states = _as_sets(sequence)
    ctx: Slots = [None] * (len(states) - 1)
    scale = _scale(max(len(s) for s in states))

    def consider(best: tuple | None, x: int, y: int, num: int, den: int, move: tuple) -> tuple | None:
        token = vocab.rank.get(_pair(x, y))
        if token is None:
            return best
        score = vocab._weight[token] * scale * num // den  # exact: den divides scale
        return (score, move, token) if best is None or score > best[0] else best

    while True:
        best = None
        for i, s in enumerate(states):
            for p in range(len(s)):
                for q in range(p + 1, len(s)):
                    best = consider(best, s[p], s[q], 2, len(s), ("in", i, i))
            if i == len(states) - 1:
                break
            t, c = states[i + 1], ctx[i]
            for x in s if c is None else ():
                for y in t:
                    best = consider(best, x, y, 1, len(s) * len(t), ("sets", i, i))
            for j, side in ((i, s), (i + 1, t)) if c is not None else ():
                for x in side:
                    best = consider(best, x, c, 1, len(side), ("slot", i, j))
        if best is None:
            break
        (kind, i, j), token = best[1], best[2]
        a, b = vocab.merges[token - vocab.n_base].pair
        if kind == "in":
            _merge_inside(states, i, a, b, token)
        elif kind == "sets":
            _merge_sets(states, ctx, i, a, b, token)
        else:
            _merge_with_slot(states, ctx, j, i, a, b, token)
        _tidy(states, ctx)
    return [tok for i, s in enumerate(states) for tok in s + [c for c in ctx[i:i + 1] if c is not None]]


def _bpe(tokens: list[int], rules: dict[Pair, int]) -> list[int]:
    """Merge `tokens` in place: the leftmost occurrence of the earliest rule, one at a time
    (`rules`: Vocabulary.adjacent)."""
    while True:
        found = [(t, i) for i in range(len(tokens) - 1) if (t := rules.get((tokens[i], tokens[i + 1]))) is not None]
        if not found:
            return tokens
        best, at = min(found)
        tokens[at:at + 2] = [best]


def segment(sequence: Sequence[Item], vocab: Vocabulary, rng: np.random.Generator | None = None) -> list[int]:
    """Tokens of a sequence: deterministic without `rng` (the release's `shuffle='none'`, used for
    targets), set permutation regularisation with it (`shuffle='feature'`, used for training
    inputs and the members of the inference ensemble): each set shuffled, flattened, then BPE."""
    if rng is None:
        return _segment_structured(sequence, vocab)
    return _bpe([s[j] for s in _as_sets(sequence) for j in rng.permutation(len(s))], vocab.adjacent)


def decode_item(tokens: Sequence[int], vocab: Vocabulary) -> frozenset[int] | None:
    """Generated tokens -> one item's feature set, or None if a token is out of range or a
    feature repeats. Look the set up in a {frozenset(features): item} catalogue; the release
    scores anything that is not one whole item's features as an invalid beam."""
    if any(not 0 <= t < vocab.size for t in tokens):
        return None
    feats = [f for t in tokens for f in vocab.expand(t)]
    return frozenset(feats) if feats and len(set(feats)) == len(feats) else None


def item_features(codes: np.ndarray, n_hash_buckets: int = 0,
                  rng: np.random.Generator | None = None) -> tuple[list[tuple[int, ...]], int]:
    """(features per item, n_base) from [n_items, n_fields] codes (release: 4 OPQ digits of a PCA'd
    text embedding). `n_hash_buckets` (release: 128) adds a field: per distinct code row a random
    permutation of buckets, its k-th item taking the k-th, so no two items share all features."""
    codes = np.asarray(codes, dtype=np.int64)
    if n_hash_buckets:
        rng = rng if rng is not None else np.random.default_rng(0)
        perms: dict[tuple[int, ...], np.ndarray] = {}
        seen: Counter[tuple[int, ...]] = Counter()
        bucket = np.empty(len(codes), dtype=np.int64)
        for i, row in enumerate(map(tuple, codes.tolist())):
            if seen[row] >= n_hash_buckets:
                raise ValueError(f"more than {n_hash_buckets} items share the code {row}")
            if row not in perms:
                perms[row] = rng.permutation(n_hash_buckets)
            bucket[i], seen[row] = perms[row][seen[row]], seen[row] + 1
        codes = np.column_stack([codes, bucket])
    tokens, base = np.empty_like(codes), 0
    for f in range(codes.shape[1]):
        values, inverse = np.unique(codes[:, f], return_inverse=True)
        tokens[:, f] = base + inverse.reshape(-1)
        base += len(values)
    return [tuple(r) for r in tokens.tolist()], base


def token_items(sequence: Sequence[Item], tokens: Sequence[int], vocab: Vocabulary) -> list[tuple[int, int]]:
    """(first, last) item of each token, tokens taking consecutive positions of the sets laid out
    in order (exact for random segmentations, whose tokens are contiguous). Raises unless the
    tokens cover exactly the sequence's features."""
    sets = _as_sets(sequence)
    if Counter(f for t in tokens for f in vocab.expand(t)) != Counter(f for s in sets for f in s):
        raise ValueError("the tokens do not cover exactly the sequence's features")
    ends, pos, out = np.cumsum([len(s) for s in sets]), 0, []
    for t in tokens:
        n = len(vocab.expand(t))
        out.append((int(np.searchsorted(ends, pos, "right")), int(np.searchsorted(ends, pos + n - 1, "right"))))
        pos += n
    return out


def segmentation_stats(sequences: Sequence[Sequence[Item]], segmentations: Sequence[Sequence[int]],
                       vocab: Vocabulary) -> dict[str, float]:
    """vocab_usage (distinct tokens used / size), merged_usage (distinct merged tokens used /
    merges), tokens_per_item, cross_item_share (merged-token occurrences spanning >= 2 items /
    merged-token occurrences), cross_merge_share (merges built more often across than inside)."""
    used: set[int] = set()
    n_tokens = n_items = n_merged = n_spanning = 0
    for seq, toks in zip(sequences, segmentations, strict=True):
        used.update(toks)
        n_tokens, n_items = n_tokens + len(toks), n_items + len(seq)
        for t, (first, last) in zip(toks, token_items(seq, toks, vocab)):
            n_merged, n_spanning = n_merged + (t >= vocab.n_base), n_spanning + (t >= vocab.n_base and first != last)
    n_merges = max(len(vocab.merges), 1)
    return {"vocab_usage": len(used) / vocab.size, "merged_usage": sum(t >= vocab.n_base for t in used) / n_merges,
            "tokens_per_item": n_tokens / max(n_items, 1), "cross_item_share": n_spanning / max(n_merged, 1),
            "cross_merge_share": sum(m.n_across > m.n_within for m in vocab.merges) / n_merges}
