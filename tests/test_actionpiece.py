"""`actionpiece` as a tokenizer: features, vocabulary from training sequences only, targets,
context-aware history encoding, the inference ensemble and the sequence-level extension point
of the tokenizer interface (training draws, views, fusion)."""

import numpy as np
import pytest
import torch

from bench.backbones import CodeTrie, T5Backbone, beam_search
from bench.backbones.base import EOS
from bench.backbones.ensemble import ensemble_search, fuse_by_rank, view_rngs
from bench.config import preset_config
from bench.datasets import Dataset, SyntheticSpec, leave_one_out, make_synthetic
from bench.errors import BenchError
from bench.tokenizers import FitContext, make_tokenizer
from bench.tokenizers.actionpiece import PRESET_OPTIONS, ActionPieceOptions, ActionPieceTokenizer
from bench.tokenizers.actionpiece_segment import decode_item, token_items
from bench.training import evaluate, training_rngs

N_ITEMS, DIM = 60, 8
SMALL = {"vocab_size": 120, "digits": 2, "codebook_size": 8, "pca_dim": 0, "hash_buckets": 16, "ensemble": 3}


@pytest.fixture(scope="module")
def data():
    d = make_synthetic(SyntheticSpec(n_items=N_ITEMS, n_users=40, seed=2))
    return d, leave_one_out(d)


def _x(seed=0):
    return np.random.default_rng(seed).standard_normal((N_ITEMS, DIM)).astype(np.float32)


def _fit(data, seed=0, **options):
    tok = ActionPieceTokenizer(**{**SMALL, **options})
    tok.fit(FitContext(data[0], data[1], seed, text_embeddings=_x, log=lambda s: None))
    return tok


@pytest.fixture(scope="module")
def tok(data):
    return _fit(data)


def test_presets_and_options():
    assert PRESET_OPTIONS["paper"] == {"beam": 50}  # the rest are the release's defaults
    o = ActionPieceOptions()
    assert (o.vocab_size, o.digits, o.codebook_size, o.pca_dim, o.hash_buckets, o.ensemble) == (39999, 4, 256, 128, 128, 5)
    for preset in ("quick", "cpu", "paper"):
        ActionPieceOptions(**PRESET_OPTIONS[preset])
    with pytest.raises(BenchError, match="ensemble must be"):
        ActionPieceTokenizer(ensemble=0)
    assert ActionPieceTokenizer(beam=50).recipe_overrides() == {"beam": 50}
    assert ActionPieceTokenizer().recipe_overrides() == {}


def test_items_have_unique_features_and_targets_that_decode_to_them(tok):
    assert len(set(tok.features)) == N_ITEMS and all(len(f) == 3 for f in tok.features)  # 2 digits + bucket
    assert len(set(tok.codes)) == N_ITEMS and tok.n_collisions == 0
    catalogue = {frozenset(f): i for i, f in enumerate(tok.features)}
    for item, code in enumerate(tok.codes):
        assert catalogue[decode_item(code, tok.merges)] == item
    assert tok.merges.size == 120 and len(tok.vocab) == 120
    assert any(len(c) < 3 for c in tok.codes)  # some features were merged inside items


def test_history_encoding_depends_on_the_draw_and_always_covers_the_items(tok):
    history = [3, 7, 11, 7, 20, 5]
    det = tok.encode_history(history)
    assert det == tok.encode_history(history)  # deterministic without an rng
    draws = {tuple(tok.encode_history(history, np.random.default_rng(s))) for s in range(30)}
    assert len(draws) > 1  # set permutation regularisation
    sequence = [tok.features[i] for i in history]
    for d in draws | {tuple(det)}:
        token_items(sequence, list(d), tok.merges)  # raises unless exactly the items' features
    assert tok.encode_history([]) == []


def test_vocabulary_sees_only_training_sequences(data):
    d, _ = data
    rng = np.random.default_rng(0)
    changed = []
    for s in d.sequences:  # new validation and test items, the training part kept
        s = list(s)
        s[-2:] = rng.integers(0, N_ITEMS, 2).tolist()
        changed.append(s)
    moved = Dataset(d.name, d.item_ids, d.user_ids, changed)
    a, b = _fit(data), _fit((moved, leave_one_out(moved)))
    assert a.codes == b.codes and a.merges.to_dict() == b.merges.to_dict()
    c = _fit((moved, leave_one_out(moved)), seed=1)
    assert c.merges.to_dict() != a.merges.to_dict()  # the seed does move the features


def test_save_load_round_trip(tok, data, tmp_path):
    ids = data[0].item_ids
    tok.save(tmp_path / "ap.index.json", ids)
    back = ActionPieceTokenizer(**SMALL)
    back.load(tmp_path / "ap.index.json", ids)
    assert back.codes == tok.codes and back.features == tok.features
    assert back.diagnostics == tok.diagnostics and 0 < back.diagnostics["tokens_per_item"] <= 3
    h = [1, 2, 3, 4]
    assert back.encode_history(h, np.random.default_rng(5)) == tok.encode_history(h, np.random.default_rng(5))


def test_default_tokenizers_encode_histories_item_by_item(data):
    tiger_like = make_tokenizer("random", {"levels": 2, "codebook_size": 4})
    tiger_like.fit(FitContext(data[0], data[1], 0))
    assert not tiger_like.context_aware and tiger_like.inference_views(True) == [None]
    history = [4, 9, 2]
    assert tiger_like.encode_history(history, np.random.default_rng(0)) == [
        t for i in history for t in tiger_like.codes[i]]


def test_training_draws_are_fresh_per_epoch_and_reproducible(tok, data, tiny_t5):
    backbone = T5Backbone(tok, tiny_t5)
    idx = np.arange(8)
    histories = [data[1].train.histories[i] for i in idx]
    targets = data[1].train.targets[idx].tolist()

    def inputs(epoch):
        return backbone.collate(histories, targets, training_rngs(backbone, 0, epoch, idx))["input_ids"]

    assert torch.equal(inputs(1), inputs(1))
    assert not torch.equal(inputs(1), inputs(2))
    labels = backbone.collate(histories, targets, training_rngs(backbone, 0, 1, idx))["labels"]
    for row, t in zip(labels.tolist(), targets):  # targets: the item alone, deterministic
        assert [x - backbone.offset for x in row if x >= backbone.offset] == list(tok.codes[t])
    id_backbone = T5Backbone(make_tokenizer("id"), tiny_t5)
    assert training_rngs(id_backbone, 0, 1, idx) is None


def _model(tok, tiny_t5):
    torch.manual_seed(0)
    return T5Backbone(tok, tiny_t5).eval()


def _decoding(tok, data, tiny_t5, n_users):
    """A seeded model, its trie, and the first test users' histories with their indices."""
    backbone = _model(tok, tiny_t5)
    idx = np.arange(n_users)
    return backbone, CodeTrie.build(backbone.item_sequences(), EOS), [data[1].test.histories[i] for i in idx], idx


def test_ensemble_of_one_equals_a_single_segmentation(tok, data, tiny_t5):
    backbone, trie, histories, idx = _decoding(tok, data, tiny_t5, 10)
    single = beam_search(backbone, trie, histories, 8, 8, rngs=view_rngs(0, idx))
    one = ensemble_search(backbone, trie, histories, idx, [0], 8, 8)
    assert np.array_equal(single.items, one.items)
    fused = fuse_by_rank([list(single.items[0])], 8)
    assert [c for c, _ in fused] == list(single.items[0])


def test_fusion_takes_every_view_s_whole_beam(tok, data, tiny_t5):
    # the release fuses n_return_sequences = maxk (50) beams per view, not only the top k
    backbone, trie, histories, idx = _decoding(tok, data, tiny_t5, 20)
    views = [0, 1, 2]
    fused = ensemble_search(backbone, trie, histories, idx, views, 8, 2)
    whole = [beam_search(backbone, trie, histories, 8, 8, rngs=view_rngs(v, idx)) for v in views]
    for u in range(len(idx)):
        expected = fuse_by_rank([[int(x) for x in m.items[u] if x >= 0] for m in whole], 2)
        assert list(fused.items[u]) == [c for c, _ in expected]


def test_every_ensemble_recommendation_is_a_catalogue_item(tok, data, tiny_t5):
    backbone = _model(tok, tiny_t5)
    trie = CodeTrie.build(backbone.item_sequences(), EOS)
    samples = data[1].test
    recipe = preset_config("quick").recipe
    recipe.beam, recipe.eval_batch_size = 6, 7
    ranked = evaluate(backbone, trie, samples, recipe, k=6)
    assert ranked.items.shape == (len(samples), 6) and ranked.n_invalid == 0
    for row, scores in zip(ranked.items, ranked.scores):
        found = row[row >= 0]
        assert len(found) == len(set(found)) and found.max() < N_ITEMS and len(found) >= 6
        assert np.all(np.diff(scores[np.isfinite(scores)]) <= 0)  # fused scores, best first
    # the fusion really combines views: 3 views rank differently from the first alone
    first = evaluate(backbone, trie, samples, recipe, k=6, ensemble=False)
    assert not np.array_equal(first.items, ranked.items)
    # batching does not change a history's segmentation
    recipe.eval_batch_size = 3
    assert np.array_equal(evaluate(backbone, trie, samples, recipe, k=6).items, ranked.items)


def test_validation_decodes_one_view_and_deterministic_ensemble(tok):
    assert tok.inference_views(True) == [0, 1, 2] and tok.inference_views(False) == [0]
    det = ActionPieceTokenizer(**{**SMALL, "ensemble": -1})
    assert det.inference_views(True) == [None] == det.inference_views(False)


def test_too_many_items_per_code_for_the_buckets(data):
    with pytest.raises(BenchError, match="raise hash_buckets"):
        _fit(data, hash_buckets=1, codebook_size=2, digits=1)


def test_subset_samples_keep_their_indices_in_views():
    """A history's draw comes from (view, sample index), not from its batch."""
    a = view_rngs(1, [5, 6])
    b = view_rngs(1, [6])
    assert a[1].integers(1 << 30) == b[0].integers(1 << 30)
    assert view_rngs(None, [1, 2]) is None


def test_code_statistics_report_the_segmentation(tok, data, tmp_path):
    from bench.evaluation.code_stats import run_code_stats
    from bench.reporting.report import code_section

    tok.save(tmp_path / "codes" / "actionpiece-seed0.index.json", data[0].item_ids)
    stats = run_code_stats(tmp_path)  # mixed feature and merged tokens: levels are positions
    assert set(stats["tokenizer"]) == {"actionpiece"} and (stats["used"] == stats["codebook_size"]).all()
    assert stats["tokens_per_item"].iloc[0] == pytest.approx(tok.diagnostics["tokens_per_item"])
    assert stats["cross_item_share"].iloc[0] == pytest.approx(tok.diagnostics["cross_item_share"])
    text = "\n".join(code_section(stats))
    assert "tokens per item" in text and f"{tok.diagnostics['tokens_per_item']:.2f}" in text


def test_the_tokenizers_beam_reaches_the_units_recipe(tmp_path, monkeypatch):
    """recipe_overrides: the release's beam count (paper preset) is the unit's recipe; a
    variant's own recipe change would still win."""
    from bench import runner as runner_module
    from bench.runner import Run

    seen = []

    class Stop(Exception):
        pass

    def fake_train(backbone, train, valid, recipe, *args, **kwargs):
        seen.append(recipe.beam)
        raise Stop

    monkeypatch.setattr(runner_module, "train", fake_train)
    config = preset_config("quick", {"synthetic.n_items": "60", "synthetic.n_users": "60"}, dataset="synthetic",
                           tokenizers=["actionpiece"], device="cpu", out=str(tmp_path / "run"))
    config.tokenizer_options["actionpiece"] = {**SMALL, "pca_dim": 16, "beam": 30}  # 384-d MiniLM, ~55 items
    with pytest.raises(Stop):
        Run(config, log=lambda m: None).run()
    assert seen == [30] and config.recipe.beam != 30
