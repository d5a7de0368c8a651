"""`cid`: collaborative indexing (recursive spectral clustering of the training co-occurrence
graph). Tiny hand-made data sets whose items co-occur only inside known groups."""

import importlib.util
import sys
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

import bench
from bench.datasets import Dataset, leave_one_out
from bench.errors import BenchError
from bench.tokenizers.base import FitContext
from bench.tokenizers.cid import PRESET_OPTIONS, CIDOptions, CIDTokenizer, cooccurrence

SIZES = (12, 12, 5)  # three groups of items that co-occur only within their group


def _grouped(sizes=SIZES, users_per_group=20, length=8, n_extra=0, seed=0):
    """Items are shuffled into groups (so a group is no id range); each user draws from one
    group. `n_extra` more items appear in no sequence at all."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(sum(sizes))
    groups = [g.tolist() for g in np.split(perm, np.cumsum(sizes)[:-1])]
    sequences = [rng.choice(g, size=length).tolist() for g in groups for _ in range(users_per_group)]
    n = sum(sizes) + n_extra
    data = Dataset("cid-test", [f"i{i}" for i in range(n)], [f"u{u}" for u in range(len(sequences))], sequences)
    trained = {i for s in leave_one_out(data).train_sequences for i in s}
    assert trained == set(range(sum(sizes)))  # every grouped item has training co-occurrences
    return data, groups


def _fit(data, seed=0, **options):
    tok = CIDTokenizer(**options)
    tok.fit(FitContext(data, leave_one_out(data), seed, log=lambda m: None))
    return tok


def _prefix_free(codes):
    every = set(codes)
    return all(c[:k] not in every for c in codes for k in range(1, len(c)))


def _check_tree(codes, cluster_size):
    """Below the root, a cluster (a code prefix) is split again exactly when it holds more than
    cluster_size items; otherwise its items end with one within-cluster token."""
    prefixes = {c[:d] for c in codes for d in range(1, len(c))}
    n_split = 0
    for p in prefixes:
        under = [c for c in codes if c[: len(p)] == p]
        leaf = [len(c) == len(p) + 1 for c in under]
        assert all(leaf) or not any(leaf), f"cluster {p} holds both items and sub-clusters"
        if all(leaf):
            assert len(under) <= cluster_size, f"leaf cluster {p} has {len(under)} > {cluster_size} items"
        else:
            assert len(under) > cluster_size, f"cluster {p} of {len(under)} <= {cluster_size} items was split"
            n_split += 1
    return n_split


def test_cooccurrence_counts_position_pairs_of_training_sequences():
    adj = cooccurrence([[0, 1, 1, 2], [3]], 5).toarray()
    expected = np.zeros((5, 5))
    for a, b in combinations([0, 1, 1, 2], 2):  # the releases' pair counting
        if a != b:
            expected[a, b] += 1
            expected[b, a] += 1
    assert np.array_equal(adj, expected)


def test_first_level_clusters_are_the_co_occurrence_groups():
    data, groups = _grouped()
    tok = _fit(data, n_clusters=3, cluster_size=8)
    first = {g: {tok.codes[i][0] for i in group} for g, group in enumerate(groups)}
    assert all(len(tokens) == 1 for tokens in first.values())  # a group is one cluster...
    assert len({t for tokens in first.values() for t in tokens}) == 3  # ...and groups are apart


def test_codes_unique_prefix_free_and_in_the_shared_pool():
    data, _ = _grouped()
    tok = _fit(data, n_clusters=3, cluster_size=8)
    assert len(set(tok.codes)) == data.n_items and tok.n_collisions == 0
    assert _prefix_free(tok.codes)
    assert tok.vocab == [f"<CI{k}>" for k in range(8)]
    assert all(0 <= t < 8 for c in tok.codes for t in c)


def test_recursion_exactly_for_clusters_above_cluster_size():
    data, groups = _grouped()
    tok = _fit(data, n_clusters=3, cluster_size=8)
    assert _check_tree(tok.codes, 8) >= 2  # both 12-item groups were split, the 5-item one not
    assert {len(tok.codes[i]) for i in groups[2]} == {2}
    assert all(len(tok.codes[i]) >= 3 for i in groups[0] + groups[1])
    wide = _fit(data, n_clusters=3, cluster_size=12)  # no group exceeds 12: one level under the root
    assert _check_tree(wide.codes, 12) == 0
    assert {len(c) for c in wide.codes} == {2}


def test_validation_and_test_items_do_not_change_the_codes():
    data, groups = _grouped()
    base = _fit(data, n_clusters=3, cluster_size=8)
    other = {i: groups[(g + 1) % 3] for g, group in enumerate(groups) for i in group}
    changed = []
    for u, s in enumerate(data.sequences):  # valid and test targets: items of another group
        s = list(s)
        s[-2], s[-1] = other[s[0]][u % len(other[s[0]])], other[s[0]][(u + 1) % len(other[s[0]])]
        changed.append(s)
    moved = Dataset(data.name, data.item_ids, data.user_ids, changed)
    assert _fit(moved, n_clusters=3, cluster_size=8).codes == base.codes


def test_unconnected_items_get_their_own_group_and_chunks():
    data, groups = _grouped(n_extra=20)  # 20 items in no training sequence
    tok = _fit(data, n_clusters=3, cluster_size=8)
    extra = range(sum(SIZES), data.n_items)
    grouped_first = {tok.codes[i][0] for g in groups for i in g}
    assert len({tok.codes[i][0] for i in extra}) == 1  # one first-level group...
    assert tok.codes[extra[0]][0] not in grouped_first  # ...of their own
    assert len(set(tok.codes)) == data.n_items and _prefix_free(tok.codes)
    _check_tree(tok.codes, 8)  # 20 > 8: chunked under that group, leaves of at most 8


def test_last_tokens_number_a_leaf_s_items_in_order_or_are_drawn():
    data, _ = _grouped()
    for last_token in ("sequential", "random"):
        tok = _fit(data, n_clusters=3, cluster_size=8, last_token=last_token)
        leaves: dict[tuple, list[tuple[int, int]]] = {}
        for item, code in enumerate(tok.codes):
            leaves.setdefault(code[:-1], []).append((item, code[-1]))
        lasts = [[last for _, last in sorted(members)] for members in leaves.values()]
        if last_token == "sequential":  # OpenP5's default: <CI0>, <CI1>, ... in item-id order
            assert all(last == list(range(len(last))) for last in lasts)
        else:  # distinct pool tokens, not the numbering
            assert all(len(set(last)) == len(last) for last in lasts)
            assert any(last != list(range(len(last))) for last in lasts)


def test_deterministic_per_seed():
    data, _ = _grouped()
    assert _fit(data, seed=3, n_clusters=3, cluster_size=8).codes == _fit(data, seed=3, n_clusters=3, cluster_size=8).codes


def test_catalogue_not_above_n_clusters_is_one_leaf():
    data = Dataset("tiny", ["a", "b", "c"], ["u0", "u1"], [[0, 1, 2, 0], [2, 1, 0]])
    tok = _fit(data, n_clusters=3, cluster_size=8)
    assert all(len(c) == 1 for c in tok.codes) and len(set(tok.codes)) == 3


def test_codes_build_a_trie_that_reaches_every_item(monkeypatch):
    # trie.py alone (it needs only torch): the bench.backbones package imports transformers
    spec = importlib.util.spec_from_file_location("cid_test_trie", Path(bench.__file__).parent / "backbones" / "trie.py")
    trie_module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, trie_module)  # dataclasses look their module up
    spec.loader.exec_module(trie_module)
    CodeTrie = trie_module.CodeTrie
    data, _ = _grouped(n_extra=3)
    tok = _fit(data, n_clusters=3, cluster_size=8)
    eos = len(tok.vocab)
    trie = CodeTrie.build(tok.codes, eos)
    assert all(trie.items_of(trie.follow([*c, eos])) == [i] for i, c in enumerate(tok.codes))


def test_save_load_round_trip(tmp_path):
    data, _ = _grouped()
    tok = _fit(data, n_clusters=3, cluster_size=8)
    path = tmp_path / "cid.index.json"
    tok.save(path, data.item_ids)
    again = CIDTokenizer(n_clusters=3, cluster_size=8)
    again.load(path, data.item_ids)
    assert again.vocab == tok.vocab and again.codes == tok.codes and again.n_collisions == 0


def test_interface_options_and_presets():
    tok = CIDTokenizer()
    assert tok.name == "cid" and not tok.needs_text and tok.inputs() == set()
    assert (tok.options.n_clusters, tok.options.cluster_size, tok.options.last_token) == (20, 500, "sequential")
    for preset in ("quick", "cpu", "paper"):
        CIDOptions(**PRESET_OPTIONS[preset])
    for bad in ({"n_clusters": 8, "cluster_size": 8}, {"n_clusters": 1}, {"assign_labels": "spectral"},
                {"eigen_solver": "dense"}, {"last_token": "first"}):
        with pytest.raises(BenchError):
            CIDTokenizer(**bad)
