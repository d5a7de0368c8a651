"""ActionPiece core (bench/tokenizers/actionpiece_core.py, actionpiece_segment.py): hand-derived counts, merges and
segmentations on toy corpora, plus seeded property checks. Pure Python, runs in seconds."""

from __future__ import annotations

import json
from fractions import Fraction as F

import numpy as np
import pytest

from bench.tokenizers import actionpiece_core as ap
from bench.tokenizers.actionpiece_core import Merge, Vocabulary, build_vocabulary, pair_counts
from bench.backbones.ensemble import fuse_by_rank
from bench.tokenizers.actionpiece_segment import decode_item, item_features, segment, segmentation_stats, token_items

# Toy corpus A: fields {0,1} {2,3} {4}; items are sets of 2-3 features.
A = [[{0, 2}, {1, 3}],
     [{0, 2}, {1, 3}, {0, 2}],
     [{0, 2, 4}, {1, 3}]]
# Inside a set of m features each pair weighs 2/m; across adjacent sets a, b: 1/(|a||b|).
#   (0,2): 1 (S1) + 1 + 1 (S2) + 2/3 (S3)                = 11/3
#   (1,3): 1 + 1 + 1                                     = 3
#   (0,1), (0,3), (1,2), (2,3): 1/4 (S1) + 2/4 (S2) + 1/6 (S3) = 11/12 each
#   (0,4), (2,4): 2/3 (S3, inside);  (1,4), (3,4): 1/6 (S3, across)
A_COUNTS = {(0, 2): F(11, 3), (1, 3): F(3), (0, 1): F(11, 12), (0, 3): F(11, 12), (1, 2): F(11, 12),
            (2, 3): F(11, 12), (0, 4): F(2, 3), (2, 4): F(2, 3), (1, 4): F(1, 6), (3, 4): F(1, 6)}
# Merges (n_base = 5):
# 1. (0,2) -> 5, 11/3, applied inside 4 sets. Corpus: [5][1,3] | [5][1,3][5] | [5,4][1,3]
#    recount: (1,3) 3; (1,5) = (3,5) = 1/2 + 1 + 1/4 = 7/4; (4,5) 1; (1,4) = (3,4) = 1/4
# 2. (1,3) -> 6, 3, inside 3 sets. Corpus: [5][6] | [5][6][5] | [5,4][6]
#    recount: (5,6) = 1 + 2 + 1/2 = 7/2; (4,5) 1; (4,6) 1/2
# 3. (5,6) -> 7, 7/2, across 3 times (S2's second 6 is already used): [7] | [7][5] | [4][7]
#    (the emptied set takes the slot token, the empty head set goes); recount (4,7) = (5,7) = 1
# 4. (4,7) -> 8, 1 (tie with (5,7): the smaller pair first), across once
# 5. (5,7) -> 9, 1, across once; no pair is left, so construction stops at 10 tokens.
A_MERGES = [Merge((0, 2), 5, F(11, 3), 4, 0), Merge((1, 3), 6, F(3), 3, 0), Merge((5, 6), 7, F(7, 2), 0, 3),
            Merge((4, 7), 8, F(1), 0, 1), Merge((5, 7), 9, F(1), 0, 1)]


class FixedOrder:
    """A stand-in rng whose 'random' order of every set is ascending or descending."""

    def __init__(self, reverse: bool = False):
        self.reverse = reverse

    def permutation(self, n: int) -> list[int]:
        return list(range(n))[::-1] if self.reverse else list(range(n))


@pytest.fixture(scope="module")
def vocab_a() -> Vocabulary:
    return build_vocabulary(A, target_size=100)


def test_initial_pair_counts_match_hand_derivation():
    assert pair_counts(A) == A_COUNTS


def test_merges_order_and_counts_match_hand_derivation(vocab_a):
    assert vocab_a.n_base == 5 and vocab_a.size == 10
    assert vocab_a.merges == A_MERGES


def test_slot_token_pairs_with_both_neighbours():
    # Items {0} then {1,k}: across pairs weigh 1/2, so (0,1) = 3/2 beats every inside pair (1).
    # Merging it empties the first set and leaves 5 in the slot before {k}: (5,k) weighs 1/1.
    corpus = [[{0}, {1, 2}], [{0}, {1, 3}], [{0}, {1, 4}]]
    assert pair_counts(corpus)[(0, 1)] == F(3, 2)
    vocab = build_vocabulary(corpus, target_size=100)
    assert vocab.merges == [Merge((0, 1), 5, F(3, 2), 0, 3), Merge((2, 5), 6, F(1), 0, 1),
                            Merge((3, 5), 7, F(1), 0, 1), Merge((4, 5), 8, F(1), 0, 1)]


def test_slot_pairs_weigh_one_over_set_size():
    # [0][1,k,l,m]: (0,1) = 3 x 1/4 = 3/4 beats every inside pair (2/4) -> 11 in the slot,
    # [] 11 [k,l,m]. Then (k,l) = 2/3 inside beats (11,k) = 1/3 (a slot next to a set of three):
    # (2,3) -> 12 gives [] 11 [12,4]: (4,12) = 1 inside, then (11,13) = 1 slot-to-singleton.
    corpus = [[{0}, {1, 2, 3, 4}], [{0}, {1, 5, 6, 7}], [{0}, {1, 8, 9, 10}]]
    assert pair_counts(corpus)[(0, 1)] == F(3, 4) and pair_counts(corpus)[(2, 3)] == F(1, 2)
    vocab = build_vocabulary(corpus, target_size=15)
    assert vocab.merges == [Merge((0, 1), 11, F(3, 4), 0, 3), Merge((2, 3), 12, F(2, 3), 1, 0),
                            Merge((4, 12), 13, F(1), 1, 0), Merge((11, 13), 14, F(1), 0, 1)]


def test_same_token_in_adjacent_sets_merges_across():
    # {1,2} -> 3 (2 = 1 + 1); then [0][3][0][3]: (0,3) three times across = 3, merged twice
    # (the middle 0 and 3 are used); that leaves [4][4], and (4,4) -> 5.
    vocab = build_vocabulary([[{0}, {1, 2}, {0}, {1, 2}]], target_size=100)
    assert vocab.merges == [Merge((1, 2), 3, F(2), 2, 0), Merge((0, 3), 4, F(3), 0, 2), Merge((4, 4), 5, F(1), 0, 1)]


def test_target_size_stops_construction(vocab_a):
    assert build_vocabulary(A, target_size=7).merges == A_MERGES[:2]
    assert vocab_a.truncate(7).merges == A_MERGES[:2]
    assert build_vocabulary(A, target_size=5).merges == []
    assert build_vocabulary(A, target_size=3).size == 5  # never below the base features


def test_release_compat_keeps_counts_of_vanished_pairs():
    # The release's diff only covers pairs still present in a sequence, so (1,5) and (3,5)
    # keep 7/4 after merge 2 removed them everywhere, and are merged although absent.
    vocab = build_vocabulary(A, target_size=10, release_compat=True)
    assert vocab.merges == A_MERGES[:3] + [Merge((1, 5), 8, F(7, 4)), Merge((3, 5), 9, F(7, 4))]


def test_incremental_updates_match_full_recount():
    rng = np.random.default_rng(0)
    feats, n_base = item_features(rng.integers(0, 3, size=(12, 3)))
    corpus = [[feats[i] for i in rng.integers(0, 12, size=rng.integers(1, 7))] for _ in range(15)]
    vocab = build_vocabulary(corpus, target_size=n_base + 30)
    states = [ap._as_sets(s) for s in corpus]
    slots = [[None] * (len(s) - 1) for s in states]
    for m in vocab.merges:  # naive reference: recount everything, take the heaviest, then smallest pair
        total: dict = {}
        for s, c in zip(states, slots):
            for p, w in ap._count(s, c, vocab.scale).items():
                total[p] = total.get(p, 0) + w
        best = max((p for p in total if p not in vocab.rank or vocab.rank[p] >= m.token),
                   key=lambda p: (total[p], -p[0], -p[1]))
        assert (best, F(total[best], vocab.scale)) == (m.pair, m.count)
        for s, c in zip(states, slots):
            ap._apply_everywhere(s, c, *m.pair, m.token)


def test_deterministic_segmentation_of_known_sequence(vocab_a):
    # [0,2][1,3][0,2,4]: (0,2) in set 0 scores 11/3, (1,3) 3, (0,2) in set 2 11/3*2/3; then
    # (5,6) across = 7/2 -> [7][0,2,4]; (0,2) -> [7][5,4]; (5,7) and (4,7) both score 1/2, the
    # first found wins: 9 in the slot, [] 9 [4].
    assert segment([{0, 2}, {1, 3}, {0, 2, 4}], vocab_a) == [9, 4]
    assert segment([{0, 2, 4}], vocab_a) == [5, 4]  # a target item: new token first
    assert segment([{1, 3}], vocab_a) == [6]
    assert segment([{4}], vocab_a) == [4]


def test_spr_segmentation_with_fixed_orders(vocab_a):
    # Ascending: 0 2 1 3 0 2 4 -> 5 1 3 0 2 4 -> 5 1 3 5 4 -> 5 6 5 4 -> 7 5 4 -> 9 4
    assert segment([{0, 2}, {1, 3}, {0, 2, 4}], vocab_a, FixedOrder()) == [9, 4]
    # Descending: 2 0 3 1 4 2 0 -> 5 3 1 4 2 0 -> 5 3 1 4 5 -> 5 6 4 5 -> 7 4 5 -> 8 5
    assert segment([{0, 2}, {1, 3}, {0, 2, 4}], vocab_a, FixedOrder(reverse=True)) == [8, 5]


def _segment_with_pieces(seq, vocab, rng):
    """Set permutation regularisation written out, keeping per token the (item, feature) pairs it
    covers: the literal rule (leftmost occurrence of the earliest rule, one at a time)."""
    tokens, pieces = [], []
    for k, s in enumerate(ap._as_sets(seq)):
        for j in rng.permutation(len(s)):
            tokens.append(s[j])
            pieces.append(((k, s[j]),))
    while True:
        found = [(t, i) for i in range(len(tokens) - 1)
                 if (t := vocab.rank.get(tuple(sorted((tokens[i], tokens[i + 1]))))) is not None]
        if not found:
            return tokens, pieces
        best, at = min(found)
        tokens[at:at + 2] = [best]
        pieces[at:at + 2] = [pieces[at] + pieces[at + 1]]


def test_spr_varies_across_seeds_and_decodes_back(vocab_a):
    seq = [{0, 2}, {1, 3}, {0, 2, 4}, {1, 3}, {0, 2}]
    seen = set()
    for seed in range(20):
        tokens, pieces = _segment_with_pieces(seq, vocab_a, np.random.default_rng(seed))
        seen.add(tuple(tokens))
        assert tokens == segment(seq, vocab_a, np.random.default_rng(seed))
        for t, piece in zip(tokens, pieces):
            assert sorted(vocab_a.expand(t)) == sorted(f for _, f in piece)
        decoded = [{f for piece in pieces for k, f in piece if k == i} for i in range(len(seq))]
        assert decoded == seq
        assert [k for piece in pieces for k, _ in piece] == sorted(k for k, s in enumerate(seq) for _ in s)
        assert token_items(seq, tokens, vocab_a) == [(piece[0][0], piece[-1][0]) for piece in pieces]
    assert len(seen) > 1


def test_decode_item(vocab_a):
    catalogue = {frozenset({0, 2, 4}): "x", frozenset({1, 3}): "y"}
    assert catalogue.get(decode_item([5, 4], vocab_a)) == "x"
    assert catalogue.get(decode_item([4, 5], vocab_a)) == "x"
    assert catalogue.get(decode_item([6], vocab_a)) == "y"
    assert decode_item([7], vocab_a) == frozenset({0, 1, 2, 3})  # a set of two items' features
    assert decode_item([5, 0], vocab_a) is None  # feature 0 twice
    assert decode_item([10], vocab_a) is None and decode_item([], vocab_a) is None


def fuse_rankings(rankings, k):
    return [c for c, _ in fuse_by_rank(rankings, k)]


def test_fuse_rankings():
    # a: 1 + 1/log2(3) = 1.63; b: 1/log2(3) + 1 + 1 = 2.63; c: 1/log2(3) = 0.63
    assert fuse_rankings([["a", "b"], ["b", "c"], ["b", "a"]], k=3) == ["b", "a", "c"]
    # 1/log2(rank + 2), not 1/(rank + 1): b = 2/log2(3) = 1.26 beats a = c = 1
    assert fuse_rankings([["a", "b"], ["c", "b"]], k=3) == ["b", "a", "c"]
    # an invalid beam (None) keeps its rank: a = 1 + 1/log2(4) = 1.5 beats b = 2/log2(3) = 1.26
    assert fuse_rankings([["a", "b", "c"], [None, "b", "a"]], k=2) == ["a", "b"]


def test_item_features_and_hash_buckets():
    codes = np.array([[5, 7], [5, 7], [9, 7], [5, 8]])
    feats, n_base = item_features(codes)
    assert feats == [(0, 2), (0, 2), (1, 2), (0, 3)] and n_base == 4
    feats, n_base = item_features(codes, n_hash_buckets=4, rng=np.random.default_rng(0))
    assert len(set(feats)) == 4 and all(len(f) == 3 for f in feats)
    assert all(4 <= f[2] < n_base for f in feats)
    with pytest.raises(ValueError):
        item_features(codes, n_hash_buckets=1)


def test_segmentation_stats(vocab_a):
    # Deterministic: S1 -> [7], S2 -> [9], S3 -> [8] (each spans items); {0,2,4} -> [5, 4] (5 inside one item)
    seqs = A + [[{0, 2, 4}]]
    segs = [segment(s, vocab_a) for s in seqs]
    assert segs == [[7], [9], [8], [5, 4]]
    stats = segmentation_stats(seqs, segs, vocab_a)
    assert stats == pytest.approx({"vocab_usage": 5 / 10, "merged_usage": 4 / 5, "tokens_per_item": 5 / 8,
                                   "cross_item_share": 3 / 4, "cross_merge_share": 3 / 5})
    with pytest.raises(ValueError):
        token_items([{0, 2}], [5, 0], vocab_a)


def test_vocabulary_round_trip(vocab_a):
    again = Vocabulary.from_dict(json.loads(json.dumps(vocab_a.to_dict())))
    assert again.merges == vocab_a.merges and again.scale == vocab_a.scale
    assert segment([{0, 2}, {1, 3}, {0, 2, 4}], again) == [9, 4]


def test_matches_official_release_on_a_seeded_corpus():
    # Expected values were produced by the official ActionPieceCore (google-deepmind/action_piece,
    # core.py: train(), then encode(shuffle='none')), run with exact fractions instead of floats
    # so that ties are not decided by rounding; its tokens shifted down by one (its padding 0).
    # The release's counting picks (2, 11) twice: the later token (33) is the one applied.
    codes = [[0, 2, 0], [0, 2, 0], [1, 0, 1], [2, 0, 2], [2, 0, 2], [0, 0, 0], [2, 2, 0], [1, 1, 0], [1, 2, 0],
             [2, 0, 0], [0, 1, 1], [2, 1, 0]]
    feats, n_base = item_features(np.array(codes))
    corpus = [[9, 11, 5, 8], [11, 10, 11, 0], [4, 0, 9, 4, 7], [1, 8], [2, 11, 2, 0, 11], [1, 4, 7],
              [3, 0, 11, 10, 8], [7, 1], [5, 0], [0, 6, 8], [10, 11], [4, 11, 7, 5, 3], [9, 0, 10, 11, 11],
              [7, 0, 2], [1, 7, 0, 2]]
    vocab = build_vocabulary([[feats[i] for i in s] for s in corpus], n_base + 25, release_compat=True)
    assert [m.pair for m in vocab.merges] == [
        (5, 6), (4, 6), (0, 9), (0, 6), (2, 10), (0, 5), (2, 6), (2, 4), (1, 6), (1, 9), (1, 4), (3, 8), (6, 11),
        (2, 3), (3, 6), (3, 11), (1, 11), (0, 7), (0, 4), (0, 3), (6, 9), (11, 19), (1, 13), (2, 11), (2, 11)]
    assert [str(m.count) for m in vocab.merges] == [
        "125/9", "211/18", "73/6", "365/36", "39/4", "28/3", "23/3", "263/36", "115/18", "17/3", "11/2", "65/12",
        "16/3", "29/6", "43/9", "9/2", "13/3", "25/6", "149/36", "73/18", "4", "4", "23/6", "23/6", "23/6"]
    expected = {(9, 6, 10, 6): [15, 3, 9, 16, 26, 9, 2], (7, 5, 6, 10, 4): [10, 1, 12, 3, 9, 16, 26, 20, 2],
                (3, 1, 7, 6, 5): [20, 2, 25, 13, 9, 12, 3], (6, 7): [9, 31],
                (0, 1, 2, 3, 4, 5): [11, 24, 1, 7, 20, 2, 20, 22, 12]}
    for items, tokens in expected.items():
        assert segment([feats[i] for i in items], vocab) == tokens


def test_random_segmentation_follows_the_literal_rule_on_random_vocabularies():
    rng = np.random.default_rng(7)
    for trial in range(30):
        corpus = [[set(rng.choice(6, size=rng.integers(1, 4), replace=False).tolist()) for _ in range(rng.integers(2, 8))]
                  for _ in range(12)]
        vocab = build_vocabulary(corpus, 6 + 25, release_compat=bool(trial % 2))  # compat: repeated rules
        for i, seq in enumerate(corpus):
            assert segment(seq, vocab, np.random.default_rng(i)) == _segment_with_pieces(
                seq, vocab, np.random.default_rng(i))[0]


def _full_recount_vocabulary(corpus, target_size, n_base, release_compat):
    """The construction with every affected sequence recounted whole (the first implementation,
    same lazy heap)."""
    import heapq

    seqs = [ap._as_sets(s) for s in corpus]
    scale = ap._scale(max(len(i) for s in seqs for i in s))
    ctxs = [[None] * (len(s) - 1) for s in seqs]
    per_seq = [ap._count(s, c, scale) for s, c in zip(seqs, ctxs)]
    total, where = {}, {}
    for sid, counts in enumerate(per_seq):
        for p, w in counts.items():
            total[p] = total.get(p, 0) + w
            where.setdefault(p, set()).add(sid)
    heap = [(-w, p) for p, w in total.items()]
    heapq.heapify(heap)
    merges, done = [], set()
    while n_base + len(merges) < target_size:
        while heap and (heap[0][1] in done or total[heap[0][1]] != -heap[0][0]):
            heapq.heappop(heap)
        if not heap or heap[0][0] >= 0:
            break
        count, pair = heapq.heappop(heap)
        new, diff = n_base + len(merges), {}
        for sid in list(where.get(pair, ())):
            ap._apply_everywhere(seqs[sid], ctxs[sid], *pair, new)
            old, now = per_seq[sid], ap._count(seqs[sid], ctxs[sid], scale)
            for p, w in now.items():
                d = w - old.pop(p, 0)
                if d:
                    diff[p] = diff.get(p, 0) + d
                    if d == w:
                        where.setdefault(p, set()).add(sid)
            for p, w in () if release_compat else old.items():
                diff[p] = diff.get(p, 0) - w
                where[p].discard(sid)
            per_seq[sid] = now
        merges.append((pair, new, F(-count, scale)))
        if not release_compat:
            done.add(pair)
        for p, d in diff.items():
            total[p] = total.get(p, 0) + d
            if d and p not in done:
                heapq.heappush(heap, (-total[p], p))
    return merges


def test_windowed_recounts_equal_whole_sequence_recounts():
    rng = np.random.default_rng(3)
    for trial in range(12):
        feats, n_base = item_features(rng.integers(0, 3, size=(15, 3)))
        corpus = [[feats[i] for i in rng.integers(0, 15, size=rng.integers(20, 60))] for _ in range(8)]
        compat = bool(trial % 2)
        vocab = build_vocabulary(corpus, n_base + 60, release_compat=compat)
        assert [(m.pair, m.token, m.count) for m in vocab.merges] == _full_recount_vocabulary(
            corpus, n_base + 60, n_base, compat)
