"""ActionPiece's tokenization core (Hou et al., ICML 2025), pure Python + numpy, written from a
reading of google-deepmind/action_piece (genrec/models/ActionPiece/{core,tokenizer,model}.py).

An item is an unordered set of feature tokens 0 .. n_base-1 (distinct across fields; see
`item_features`); a sequence is a list of such sets. `build_vocabulary` merges the heaviest
token pair, counted inside a set (weight 2/|A|) and across adjacent sets (1/(|A_i||A_i+1|));
a cross-set merge puts its token in the slot between the sets, which then pairs with each
neighbour (1/|A|). Only the sequences holding the merged pair are updated (inverted index,
per-sequence counts, lazy max-heap), as in the release. `segment` is the release's
deterministic segmentation without an rng (its targets) and set permutation regularisation
with one (its training inputs and inference-ensemble members). Counts are exact (integers
over `Vocabulary.scale`): ties go to the smallest pair, as the release's heap of (-count, pair)
orders them, but never to rounding. `release_compat=True` reproduces the release's counting.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable, Collection, Hashable, Sequence

import numpy as np

Pair = tuple[int, int]
Item = Collection[int]
Slots = list[int | None]  # slot i: None or the one token between sets i and i+1


def _pair(a: int, b: int) -> Pair:
    return (a, b) if a <= b else (b, a)


def _scale(max_set: int) -> int:
    """A common denominator of every weight 2/m and 1/(m1*m2) with m, m1, m2 <= max_set."""
    return math.lcm(*(a * b for a in range(1, max_set + 1) for b in range(1, max_set + 1)))


def _as_sets(sequence: Sequence[Item]) -> list[list[int]]:
    """Sorted sets: with field-offset features, sorted is field order, the release's order."""
    sets = [sorted({int(f) for f in item}) for item in sequence]
    if not sets or not all(sets):
        raise ValueError("a sequence needs at least one item and every item at least one feature")
    return sets


@dataclass(frozen=True)
class Merge:
    """Rule `pair` -> `token`, its exact weighted count when chosen (the release's `priority`),
    and how often construction applied it inside one set / across sets."""

    pair: Pair
    token: int
    count: Fraction
    n_within: int = 0
    n_across: int = 0


@dataclass
class Vocabulary:
    """Base feature tokens 0 .. n_base-1, then one token per merge, in merge order."""

    n_base: int
    merges: list[Merge]
    scale: int = 1
    rank: dict[Pair, int] = field(init=False, repr=False)  # a repeated rule maps to its last token
    _weight: dict[int, int] = field(init=False, repr=False)  # count * scale, exact
    _expanded: dict[int, tuple[int, ...]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.scale = math.lcm(self.scale, *(m.count.denominator for m in self.merges))
        self.rank = {m.pair: m.token for m in self.merges}
        self._weight = {m.token: int(m.count * self.scale) for m in self.merges}
        self._expanded = {}

    @property
    def size(self) -> int:
        return self.n_base + len(self.merges)

    def expand(self, token: int) -> tuple[int, ...]:
        """The base features a token stands for (a multiset; the order is not positional)."""
        if token < self.n_base:
            return (token,)
        if token not in self._expanded:
            a, b = self.merges[token - self.n_base].pair
            self._expanded[token] = self.expand(a) + self.expand(b)
        return self._expanded[token]

    def truncate(self, size: int) -> Vocabulary:
        """The first `size` tokens, as the release's `from_pretrained(path, vocab_size)`."""
        return Vocabulary(self.n_base, self.merges[: max(size - self.n_base, 0)], self.scale)

    def to_dict(self) -> dict[str, Any]:
        return {"n_base": self.n_base, "scale": self.scale,
                "merges": [[*m.pair, m.token, str(m.count), m.n_within, m.n_across] for m in self.merges]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Vocabulary:
        return cls(d["n_base"], [Merge((a, b), t, Fraction(c), w, x) for a, b, t, c, w, x in d["merges"]], d["scale"])


def _count(states: list[list[int]], ctx: Slots, scale: int) -> dict[Pair, int]:
    """Weighted pair counts of one sequence, times `scale` (the hot loop: pairs built inline)."""
    out: dict[Pair, int] = defaultdict(int)
    for i, s in enumerate(states):
        if len(s) > 1:
            w = 2 * scale // len(s)
            for p, x in enumerate(s):
                for y in s[p + 1:]:
                    out[(x, y) if x <= y else (y, x)] += w
        if i == len(states) - 1:
            break
        c, t = ctx[i], states[i + 1]
        if c is None and s and t:
            w = scale // (len(s) * len(t))
            for x in s:
                for y in t:
                    out[(x, y) if x <= y else (y, x)] += w
        elif c is not None:
            for side in (v for v in (s, t) if v):
                w = scale // len(side)
                for x in side:
                    out[(x, c) if x <= c else (c, x)] += w
    return out


def _merge_inside(states: list[list[int]], i: int, a: int, b: int, new: int) -> bool:
    """Two tokens of set i -> new token, put first (coarse to fine, as the release does)."""
    s = states[i]
    if a == b or a not in s or b not in s:
        return False
    states[i] = [new] + [x for x in s if x != a and x != b]
    return True


def _merge_sets(states: list[list[int]], ctx: Slots, i: int, a: int, b: int, new: int) -> bool:
    """A token of set i + a token of set i+1 -> new token in the empty slot between them."""
    s, t = states[i], states[i + 1]
    for x, y in ((a, b), (b, a)):
        if x in s and y in t:
            states[i], states[i + 1], ctx[i] = [z for z in s if z != x], [z for z in t if z != y], new
            return True
    return False


def _merge_with_slot(states: list[list[int]], ctx: Slots, j: int, i: int, a: int, b: int, new: int) -> bool:
    """A token of set j (i or i+1) + the token in slot i -> new token in slot i."""
    other = b if ctx[i] == a else a if ctx[i] == b else None
    if other is None or other not in states[j]:
        return False
    states[j], ctx[i] = [z for z in states[j] if z != other], new
    return True


def _tidy(states: list[list[int]], ctx: Slots) -> None:
    """The release's clean-up: an emptied set takes the token of the slot on its left; an empty
    set followed by an empty slot disappears (the last set always stays)."""
    changed = True
    while changed:
        changed = False
        for j in range(1, len(states)):
            if not states[j] and ctx[j - 1] is not None:
                states[j], ctx[j - 1], changed = [ctx[j - 1]], None, True
        j = 0
        while j < len(states) - 1:
            if not states[j] and ctx[j] is None:
                del states[j], ctx[j]
                changed = True
            else:
                j += 1


def _apply_everywhere(states: list[list[int]], ctx: Slots, a: int, b: int, new: int) -> tuple[int, int]:
    """One left-to-right pass applying rule (a, b) wherever it fits; returns (within, across)."""
    within = across = 0
    for i in range(len(states)):
        within += _merge_inside(states, i, a, b, new)
        if i == len(states) - 1:
            break
        if ctx[i] is None:
            across += _merge_sets(states, ctx, i, a, b, new)
        else:
            across += _merge_with_slot(states, ctx, i, i, a, b, new)
            across += _merge_with_slot(states, ctx, i + 1, i, a, b, new)
    _tidy(states, ctx)
    return within, across


def pair_counts(corpus: Sequence[Sequence[Item]]) -> dict[Pair, Fraction]:
    """The initial weighted pair counts of a corpus (what the first merge is chosen from)."""
    seqs = [_as_sets(s) for s in corpus]
    scale = _scale(max(len(i) for s in seqs for i in s))
    total: Counter[Pair] = Counter()
    for s in seqs:
        total.update(_count(s, [None] * (len(s) - 1), scale))
    return {p: Fraction(w, scale) for p, w in total.items()}


def build_vocabulary(corpus: Sequence[Sequence[Item]], target_size: int, n_base: int | None = None,
                     release_compat: bool = False, progress: Callable[[int], None] | None = None) -> Vocabulary:
    """Merge the heaviest pair until there are `target_size` tokens (base + merges) or no pair
    with a positive count is left. Default: exact counts, each pair merged once.
    `release_compat`: as the release, a pair that vanishes from a sequence keeps that
    sequence's old count in the total (its diff only covers pairs still present), and a pair
    can be chosen again (a repeated rule; the later token wins in `rank`)."""
    seqs = [_as_sets(s) for s in corpus]
    top = max((f for s in seqs for i in s for f in i), default=-1)
    n_base = top + 1 if n_base is None else n_base
    if top >= n_base or min((i[0] for s in seqs for i in s), default=0) < 0:
        raise ValueError(f"features must lie in [0, {n_base})")
    scale = _scale(max((len(i) for s in seqs for i in s), default=1))
    ctxs: list[Slots] = [[None] * (len(s) - 1) for s in seqs]
    per_seq = [_count(s, c, scale) for s, c in zip(seqs, ctxs)]
    total: dict[Pair, int] = defaultdict(int)
    where: dict[Pair, set[int]] = defaultdict(set)  # inverted index: pair -> sequences
    for sid, counts in enumerate(per_seq):
        for p, w in counts.items():
            total[p] += w
            where[p].add(sid)
    heap = [(-w, p) for p, w in total.items()]
    heapq.heapify(heap)
    merges: list[Merge] = []
    done: set[Pair] = set()
    while n_base + len(merges) < target_size:
        while heap and (heap[0][1] in done or total[heap[0][1]] != -heap[0][0]):
            heapq.heappop(heap)  # outdated entry: the heap is updated lazily
        if not heap or heap[0][0] >= 0:
            break
        count, pair = heapq.heappop(heap)
        new, within, across = n_base + len(merges), 0, 0
        diff: dict[Pair, int] = defaultdict(int)
        for sid in list(where[pair]):
            w_in, w_across = _apply_everywhere(seqs[sid], ctxs[sid], *pair, new)
            within, across = within + w_in, across + w_across
            old, now = per_seq[sid], _count(seqs[sid], ctxs[sid], scale)
            for p, w in now.items():
                d = w - old.pop(p, 0)
                if d:
                    diff[p] += d
                    if d == w:  # new in this sequence
                        where[p].add(sid)
            for p, w in () if release_compat else old.items():  # gone from this sequence
                diff[p] -= w
                where[p].discard(sid)
            per_seq[sid] = now
        merges.append(Merge(pair, new, Fraction(-count, scale), within, across))
        if not release_compat:
            done.add(pair)
        for p, d in diff.items():
            total[p] += d
            if d and p not in done:
                heapq.heappush(heap, (-total[p], p))
        if progress is not None:
            progress(len(merges))
    return Vocabulary(n_base, merges, scale)


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


def segment_pieces(sequence: Sequence[Item], vocab: Vocabulary,
                   rng: np.random.Generator) -> tuple[list[int], list[tuple[tuple[int, int], ...]]]:
    """Set permutation regularisation: shuffle each set, flatten, then merge adjacent tokens,
    earliest rule first, one occurrence at a time (BPE). Also returns, per token, the
    (item index, feature) pairs it covers in sequence order: a segmentation decodes back."""
    tokens: list[int] = []
    pieces: list[tuple[tuple[int, int], ...]] = []
    for k, s in enumerate(_as_sets(sequence)):
        for j in rng.permutation(len(s)):
            tokens.append(s[j])
            pieces.append(((k, s[j]),))
    while True:
        found = [(t, i) for i in range(len(tokens) - 1)
                 if (t := vocab.rank.get(_pair(tokens[i], tokens[i + 1]))) is not None]
        if not found:
            return tokens, pieces
        best, at = min(found)
        tokens[at:at + 2] = [best]
        pieces[at:at + 2] = [pieces[at] + pieces[at + 1]]


def segment(sequence: Sequence[Item], vocab: Vocabulary, rng: np.random.Generator | None = None) -> list[int]:
    """Tokens of a sequence: deterministic without `rng` (the release's `shuffle='none'`, used for
    targets), set permutation regularisation with it (`shuffle='feature'`, used for inputs)."""
    return _segment_structured(sequence, vocab) if rng is None else segment_pieces(sequence, vocab, rng)[0]


def segment_ensemble(sequence: Sequence[Item], vocab: Vocabulary, n: int,
                     rng: np.random.Generator | None) -> list[list[int]]:
    """Inputs of the inference ensemble: `n` independent random segmentations of a history
    (release default 5); n = -1: the single deterministic one (the release's -1)."""
    if n == -1:
        return [segment(sequence, vocab)]
    if n < 1 or rng is None:
        raise ValueError("an ensemble needs n >= 1 and an rng, or n = -1")
    return [segment(sequence, vocab, rng) for _ in range(n)]


def decode_item(tokens: Sequence[int], vocab: Vocabulary) -> frozenset[int] | None:
    """Generated tokens -> one item's feature set, or None if a token is out of range or a
    feature repeats. Look the set up in a {frozenset(features): item} catalogue; the release
    scores anything that is not one whole item's features as an invalid beam."""
    if any(not 0 <= t < vocab.size for t in tokens):
        return None
    feats = [f for t in tokens for f in vocab.expand(t)]
    return frozenset(feats) if feats and len(set(feats)) == len(feats) else None


def fuse_rankings(rankings: Sequence[Sequence[Hashable | None]], k: int) -> list[Hashable]:
    """The release's ensemble aggregation (model.py `generate`): in each member's beam list the
    candidate at rank j (from 0) gains 1/log2(j + 2); invalid beams (None) keep their rank and
    gain nothing; sort by total (ties: first seen), keep k."""
    score: dict[Hashable, float] = defaultdict(float)
    for ranking in rankings:
        for j, candidate in enumerate(ranking):
            if candidate is not None:
                score[candidate] += 1.0 / math.log2(j + 2)
    return sorted(score, key=score.__getitem__, reverse=True)[:k]


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
