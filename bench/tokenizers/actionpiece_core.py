"""ActionPiece's tokenization core (Hou et al., ICML 2025), pure Python + numpy, written from a
reading of google-deepmind/action_piece (genrec/models/ActionPiece/{core,tokenizer,model}.py).

An item is an unordered set of feature tokens 0 .. n_base-1 (distinct across fields; see
`item_features`); a sequence is a list of such sets. `build_vocabulary` merges the heaviest
token pair, counted inside a set (weight 2/|A|) and across adjacent sets (1/(|A_i||A_i+1|));
a cross-set merge puts its token in the slot between the sets, which then pairs with each
neighbour (1/|A|). Only the sequences holding the merged pair are updated (inverted index,
per-sequence counts, lazy max-heap), as in the release. Segmentation with the vocabulary is
in actionpiece_segment.py. Counts are exact (integers
over `Vocabulary.scale`): ties go to the smallest pair, as the release's heap of (-count, pair)
orders them, but never to rounding. `release_compat=True` reproduces the release's counting.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable, Collection, Sequence


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
    adjacent: dict[Pair, int] = field(init=False, repr=False)  # `rank` under both orders of each pair
    _weight: dict[int, int] = field(init=False, repr=False)  # count * scale, exact
    _expanded: dict[int, tuple[int, ...]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.scale = math.lcm(self.scale, *(m.count.denominator for m in self.merges))
        self.rank = {m.pair: m.token for m in self.merges}
        self.adjacent = {**self.rank, **{(b, a): t for (a, b), t in self.rank.items()}}
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
    """Weighted pair counts of one sequence, times `scale`."""
    out: dict[Pair, int] = defaultdict(int)
    _count_window(states, ctx, 0, len(states) - 1, scale, out, 1)
    return out


def _count_window(states: list[list[int]], ctx: Slots, lo: int, hi: int, scale: int,
                  out: dict[Pair, int], sign: int) -> None:
    """Add sign x the counts of sets lo..hi and of the links between consecutive ones (the hot
    loop: pairs built inline)."""
    for i in range(lo, hi + 1):
        s = states[i]
        if len(s) > 1:
            w = sign * (2 * scale // len(s))
            for p, x in enumerate(s):
                for y in s[p + 1:]:
                    out[(x, y) if x <= y else (y, x)] += w
        if i == hi:
            break
        c, t = ctx[i], states[i + 1]
        if c is None and s and t:
            w = sign * (scale // (len(s) * len(t)))
            for x in s:
                for y in t:
                    out[(x, y) if x <= y else (y, x)] += w
        elif c is not None:
            for side in (v for v in (s, t) if v):
                w = sign * (scale // len(side))
                for x in side:
                    out[(x, c) if x <= c else (c, x)] += w


def _count_change(old_states: list[list[int]], old_ctx: Slots, states: list[list[int]], ctx: Slots,
                  ids: list[int], scale: int) -> dict[Pair, int]:
    """The count difference of one sequence made by a merge pass (and its tidy), computed on
    windows around what changed instead of both whole sequences. `ids`: the old index of each
    surviving set. A set is changed when its tokens differ; a link when its slot or its right
    neighbour differ. Each run of changes is counted one unchanged set beyond each end, so the
    links leaving a window are the same before and after."""
    n = len(states)
    changed = [p for p in range(n) if states[p] != old_states[ids[p]]]
    for p in range(n - 1):
        if ids[p + 1] != ids[p] + 1 or ctx[p] != old_ctx[ids[p]]:
            changed += [p, p + 1]
    if not changed:
        return {}
    out: dict[Pair, int] = defaultdict(int)
    changed = sorted(set(changed))
    start = prev = changed[0]
    for p in changed[1:] + [n + 2]:
        if p > prev + 2:  # windows [start-1, prev+1] and [p-1, ...] share no set
            lo, hi = max(start - 1, 0), min(prev + 1, n - 1)
            old_lo = 0 if lo == 0 else ids[lo]
            old_hi = len(old_states) - 1 if hi == n - 1 else ids[hi]
            _count_window(old_states, old_ctx, old_lo, old_hi, scale, out, -1)
            _count_window(states, ctx, lo, hi, scale, out, 1)
            start = p
        prev = p
    return {q: d for q, d in out.items() if d}


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


def _tidy(states: list[list[int]], ctx: Slots, ids: list[int] | None = None) -> None:
    """The release's clean-up: an emptied set takes the token of the slot on its left; an empty
    set followed by an empty slot disappears (the last set always stays). `ids`, if given, is
    kept in step (one entry per set)."""
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
                if ids is not None:
                    del ids[j]
                changed = True
            else:
                j += 1


def _apply_everywhere(states: list[list[int]], ctx: Slots, a: int, b: int, new: int,
                      ids: list[int] | None = None) -> tuple[int, int]:
    """One left-to-right pass applying rule (a, b) wherever it fits, then the tidy (`ids` as
    there); returns (within, across)."""
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
    _tidy(states, ctx, ids)
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
            states, ctx = seqs[sid], ctxs[sid]
            old_states, old_ctx, ids = list(states), list(ctx), list(range(len(states)))
            w_in, w_across = _apply_everywhere(states, ctx, *pair, new, ids)
            within, across = within + w_in, across + w_across
            counts = per_seq[sid]
            for p, d in _count_change(old_states, old_ctx, states, ctx, ids, scale).items():
                before = counts.get(p, 0)
                if before + d:
                    counts[p] = before + d
                    diff[p] += d
                    if not before:  # new in this sequence
                        where[p].add(sid)
                else:  # gone from this sequence: the release keeps its count (release_compat)
                    del counts[p]
                    if not release_compat:
                        diff[p] += d
                        where[p].discard(sid)
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
