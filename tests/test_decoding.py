import numpy as np
import pytest
import torch

from bench.backbones import CodeTrie, T5Backbone, beam_search, exact_scores
from bench.backbones.base import EOS
from bench.datasets import Dataset, SyntheticSpec, leave_one_out, make_synthetic
from bench.tokenizers import FitContext, make_tokenizer
from bench.tokenizers.base import disambiguate


def test_trie_in_flat_arrays():
    trie = CodeTrie.build([(5, 6), (5, 7), (8,)], eos=1)
    leaf = trie.follow([5, 7, 1])
    assert trie.items_of(leaf) == [1]
    assert trie.follow([5, 9]) == -1
    assert trie.follow([8, 1]) >= 0 and trie.items_of(trie.follow([8, 1])) == [2]
    rows, edges = trie.edges(torch.tensor([0, trie.follow([5]), -1]))
    assert rows.tolist() == [0, 0, 1, 1]
    assert trie.edge_token[edges].tolist() == [5, 8, 6, 7]


def _model_and_data(tiny_t5, tokenizer_spec="id", options=None, n_items=25):
    torch.manual_seed(0)
    data = make_synthetic(SyntheticSpec(n_items=n_items, n_users=30, seed=3))
    split = leave_one_out(data)
    tok = make_tokenizer(tokenizer_spec, options)
    tok.fit(FitContext(data, split, 0))
    return T5Backbone(tok, tiny_t5).eval(), split


def test_beam_search_returns_catalogue_items_and_equals_brute_force(tiny_t5):
    backbone, split = _model_and_data(tiny_t5)
    trie = CodeTrie.build(backbone.item_sequences(), EOS)
    histories = split.test.histories[:6]
    ranked = beam_search(backbone, trie, histories, beam=25, k=25)
    assert ranked.n_invalid == 0
    assert ((ranked.items >= 0) & (ranked.items < 25)).all()
    assert all(len(set(row)) == len(row) for row in ranked.items.tolist())  # de-duplicated
    exact = exact_scores(backbone, histories, length_penalty=1.0)
    assert (ranked.items[:, 0] == exact.argmax(1)).all()
    # with beam >= catalogue size the search is exhaustive: the whole order and scores match
    assert np.allclose(ranked.scores, np.sort(exact, axis=1)[:, ::-1], atol=1e-4)


def test_beam_search_on_multi_level_codes_with_kept_collisions(tiny_t5, tmp_path):
    """Hand-made 2-level codes where items 0 and 1 collide and are kept (one leaf, two items)."""
    import json

    data = Dataset("t", [str(i) for i in range(6)], ["u0", "u1"], [[0, 1, 2, 3], [4, 5, 0, 2]])
    index = {"0": ["<a_0>", "<b_0>"], "1": ["<a_0>", "<b_0>"], "2": ["<a_0>", "<b_1>"],
             "3": ["<a_1>", "<b_0>"], "4": ["<a_1>", "<b_1>"], "5": ["<a_2>", "<b_0>"]}
    path = tmp_path / "x.index.json"
    path.write_text(json.dumps(index))
    tok = make_tokenizer(f"precomputed:{path}", {"collisions": "keep"})
    tok.fit(FitContext(data, leave_one_out(data), 0, log=lambda m: None))
    assert tok.n_collisions == 1
    torch.manual_seed(1)
    backbone = T5Backbone(tok, tiny_t5).eval()
    trie = CodeTrie.build(backbone.item_sequences(), EOS)
    ranked = beam_search(backbone, trie, [[0, 1], [2]], beam=20, k=6)
    assert sorted(ranked.items[0].tolist()) == list(range(6))  # both colliding items listed


def test_disambiguate_suffix_only_for_colliding_items():
    vocab, codes, n = disambiguate(["a", "b"], [(0,), (0,), (1,), (0,)], "suffix")
    assert n == 2 and len(set(codes)) == 4
    assert codes[2] == (1,)
    assert vocab[2:] == ["<b_0>", "<b_1>", "<b_2>"]


def _suffix_codes_model(tiny_t5, tmp_path):
    """2-level codes in which three groups collide, so `suffix` gives those items a third
    token: sequences of different lengths, and a last step where few beams are live."""
    import json

    n = 12
    data = Dataset("t", [str(i) for i in range(n)], ["u0", "u1", "u2"], [[0, 1, 2, 3], [4, 5, 0, 2, 7], [9, 8, 11]])
    index = {str(i): [f"<a_{i % 3}>", f"<b_{(i // 3) % 3}>"] for i in range(n)}
    path = tmp_path / "x.index.json"
    path.write_text(json.dumps(index))
    tok = make_tokenizer(f"precomputed:{path}")
    tok.fit(FitContext(data, leave_one_out(data), 0, log=lambda m: None))
    torch.manual_seed(2)
    return T5Backbone(tok, tiny_t5).eval()


def _fixed_length_model(tiny_t5):
    """12 items with distinct 2-token codes: every sequence is 2 tokens + EOS."""
    import json
    import tempfile
    from pathlib import Path

    n = 12
    data = Dataset("t", [str(i) for i in range(n)], ["u0", "u1"], [[0, 1, 2, 3], [4, 5, 0, 2, 7]])
    path = Path(tempfile.mkdtemp()) / "x.index.json"
    path.write_text(json.dumps({str(i): [f"<a_{i % 3}>", f"<b_{i // 3}>"] for i in range(n)}))
    tok = make_tokenizer(f"precomputed:{path}")
    tok.fit(FitContext(data, leave_one_out(data), 0, log=lambda m: None))
    torch.manual_seed(2)
    return T5Backbone(tok, tiny_t5).eval()


def test_fast_decoder_equals_hugging_face_reference(tiny_t5, tmp_path):
    """The fast path (per-user cross-attention, one-row first step, live-row subsets) must
    give the same top-K items and scores as Hugging Face's forward with its own cache."""
    backbone = _suffix_codes_model(tiny_t5, tmp_path)
    trie = CodeTrie.build(backbone.item_sequences(), EOS)
    assert len({len(s) for s in backbone.item_sequences()}) == 2  # suffixed and plain codes
    histories = [[0, 1], [2], [3, 4, 5, 6], [11]]
    for beam in (3, 12):  # beam 3: at the last step few beams are live and only those rows are computed
        results = {}
        for fast in (True, False):
            backbone.fast_decoding = fast
            results[fast] = beam_search(backbone, trie, histories, beam=beam, k=beam)
        assert (results[True].items == results[False].items).all()
        assert np.allclose(results[True].scores, results[False].scores, atol=1e-5)
    exact = exact_scores(backbone, histories, length_penalty=1.0)  # beam 12 = the catalogue: exhaustive
    assert np.allclose(results[True].scores, np.sort(exact, axis=1)[:, ::-1], atol=1e-5)


def test_live_row_subset_gives_the_same_log_probs(tiny_t5, tmp_path):
    backbone = _suffix_codes_model(tiny_t5, tmp_path)
    histories, beam = [[0, 1], [2, 3]], 4
    n = len(histories) * beam
    tokens = [None, torch.arange(n) % 5 + 2, torch.arange(n) % 3 + 2]
    parents = [None, torch.arange(n), torch.tensor([1, 0, 2, 3, 7, 6, 5, 4])]
    live = torch.tensor([False, True, False, False, False, False, True, False])
    full, part = backbone.begin(histories, beam), backbone.begin(histories, beam)
    with torch.inference_mode():
        for i, (tok, par) in enumerate(zip(tokens, parents)):
            a = backbone.step_live(full, tok, par, None)
            b = backbone.step_live(part, tok, par, live if i == len(tokens) - 1 else None)  # only the last step skips rows
        assert torch.allclose(a[live], b[live], atol=1e-5)
        assert (b[~live] == 0).all()


@pytest.mark.parametrize("length_penalty", [0.0, 1.0, 2.0])
def test_beam_search_equals_hugging_face_generate_with_its_length_penalty(tiny_t5, tmp_path, length_penalty):
    """Codes of two lengths: the finished-item pool, length normalisation and early stop of
    ours give Hugging Face's `generate` (default early stopping) items, even with small beams."""
    from bench.perf import hf_generate, prefix_dict

    backbone = _suffix_codes_model(tiny_t5, tmp_path)
    trie = CodeTrie.build(backbone.item_sequences(), EOS)
    allowed = prefix_dict(backbone.item_sequences(), EOS)
    histories = [[0, 1], [2], [3, 4, 5, 6], [11], [7, 8]]
    for beam in (2, 4, 7):
        ours = beam_search(backbone, trie, histories, beam=beam, k=beam, length_penalty=length_penalty)
        items, scores = hf_generate(backbone, trie, histories, beam, beam, allowed, length_penalty)
        assert (ours.items == items).all(), (beam, ours.items, items)
        assert np.allclose(ours.scores, scores, atol=1e-4)


def test_length_penalty_changes_nothing_for_fixed_length_codes(tiny_t5):
    """id, tiger and letter codes all have one length: every score is divided by the same
    number, so the ranking is the same for any length_penalty."""
    backbone = _fixed_length_model(tiny_t5)
    trie = CodeTrie.build(backbone.item_sequences(), EOS)
    histories = [[0, 1], [2], [3, 4, 5], [9]]
    base = beam_search(backbone, trie, histories, beam=6, k=6, length_penalty=0.0)
    for lp in (0.5, 1.0, 2.0):
        other = beam_search(backbone, trie, histories, beam=6, k=6, length_penalty=lp)
        assert (other.items == base.items).all()
        assert np.allclose(other.scores, base.scores / 3.0**lp, atol=1e-5)  # 2 tokens + EOS
