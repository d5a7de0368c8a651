"""SASRec: training sees the training split only, learns on a tiny seeded set, recommends
valid ids, and is cached; LETTER's own CF embeddings are used when a data set ships them."""

import numpy as np
import pytest
import torch

from bench.datasets import Dataset, SyntheticSpec, leave_one_out, make_synthetic
from bench.embeddings import sasrec
from bench.embeddings.sasrec import Options, cf_embeddings, ndcg_at_k, train_sasrec, training_windows
from bench.errors import BenchError
from bench.options import make_options

TINY = Options(hidden=8, epochs=1, batch_size=4, patience=0)


def hand_made() -> Dataset:
    # items 20..25 are only ever validation (second-to-last) or test (last) targets
    seqs = [[0, 1, 2, 3, 20, 21], [4, 5, 6, 22, 23], [7, 8, 9, 10, 11, 12, 13, 24, 25]]
    return Dataset("hand", [str(i) for i in range(26)], ["a", "b", "c"], seqs, source="hand")


def test_windows_make_every_training_transition_a_target_once():
    seq = list(range(45))
    inputs, targets = training_windows([seq, [7]], max_length=20)
    pairs = []
    for x, y in zip(inputs.tolist(), targets.tolist()):
        for t in range(20):
            if y[t]:
                assert x[t] > 0  # a target always follows a real item at the same position
                pairs.append((x[t] - 1, y[t] - 1))
    assert sorted(pairs) == [(i, i + 1) for i in range(44)]


def test_training_data_holds_no_validation_or_test_target(monkeypatch):
    data = hand_made()
    split = leave_one_out(data)
    seen = {}

    def recording(sequences, max_length):
        seen["sequences"] = [list(s) for s in sequences]
        seen["windows"] = training_windows(sequences, max_length)
        return seen["windows"]

    monkeypatch.setattr(sasrec, "training_windows", recording)
    train_sasrec(split, data.n_items, TINY, seed=0, progress=False)
    held_out = set(split.valid.targets.tolist()) | set(split.test.targets.tolist())
    assert held_out == set(range(20, 26))
    assert seen["sequences"] == [s[:-2] for s in data.sequences]
    used = {int(t) - 1 for w in seen["windows"] for t in w.flatten() if t > 0}
    assert used and not used & held_out


def test_learns_on_a_tiny_synthetic_set():
    data = make_synthetic(SyntheticSpec(n_items=100, n_users=300))
    split = leave_one_out(data)
    model = train_sasrec(split, data.n_items, Options(hidden=16, epochs=5, lr=5e-3, patience=2), seed=0, progress=False)
    random_ndcg = sum(1 / np.log2(r + 2) for r in range(10)) / data.n_items  # ~0.045
    assert ndcg_at_k(model, split.valid) > 3 * random_ndcg
    # early stopping keeps the best validation epoch
    best = max(model.history, key=lambda r: r["valid_ndcg10"])
    assert model.best_epoch == best["epoch"]
    assert ndcg_at_k(model, split.valid) == pytest.approx(best["valid_ndcg10"])
    assert model.item_embeddings().shape == (100, 16)


def test_attention_is_causal():
    model = sasrec.SASRec(30, Options(hidden=8)).eval()
    a = sasrec.pad_histories([[1, 2, 3, 4, 5]], 20)
    b = sasrec.pad_histories([[1, 2, 3, 4, 9]], 20)
    ha, hb = model.encode(a), model.encode(b)
    assert torch.allclose(ha[:, :-1], hb[:, :-1])  # earlier positions never see the last item
    assert not torch.allclose(ha[:, -1], hb[:, -1])


def test_recommend_gives_valid_ids():
    data = hand_made()
    model = train_sasrec(leave_one_out(data), data.n_items, TINY, seed=0, progress=False)
    top = model.recommend([[0, 1], [], list(range(26)) * 2], k=5, batch_size=2)
    assert top.shape == (3, 5) and top.dtype == np.int64
    assert ((top >= 0) & (top < 26)).all()
    assert all(len(set(row)) == 5 for row in top.tolist())
    assert model.recommend([[3]], k=100).shape == (1, 26)


def test_same_seed_same_model():
    data = hand_made()
    split = leave_one_out(data)
    a = train_sasrec(split, data.n_items, TINY, seed=3, progress=False).item_embeddings()
    b = train_sasrec(split, data.n_items, TINY, seed=3, progress=False).item_embeddings()
    np.testing.assert_array_equal(a, b)


def test_cf_embeddings_are_cached(tmp_path, monkeypatch):
    data = hand_made()
    split = leave_one_out(data)
    first = cf_embeddings(data, split, TINY, seed=0, cache_dir=tmp_path, progress=False)
    assert first.shape == (26, 8) and first.dtype == np.float32
    monkeypatch.setattr(sasrec, "train_sasrec", lambda *a, **k: pytest.fail("trained again despite the cache"))
    np.testing.assert_array_equal(cf_embeddings(data, split, TINY, seed=0, cache_dir=tmp_path, progress=False), first)


def test_shipped_cf_embeddings_are_used_only_when_asked_for(tmp_path, monkeypatch):
    given = np.ones((26, 8))
    data = hand_made()
    data.cf_embeddings = given
    # default: trained on the training split, the shipped ones ignored (unknown provenance)
    trained = cf_embeddings(data, leave_one_out(data), TINY, cache_dir=tmp_path, progress=False)
    assert trained.shape == (26, 8) and not np.allclose(trained, 1.0)
    monkeypatch.setattr(sasrec, "train_sasrec", lambda *a, **k: pytest.fail("trained although shipped embeddings were asked for"))
    out = cf_embeddings(data, leave_one_out(data), TINY, shipped=True, cache_dir=tmp_path)
    assert out.dtype == np.float32 and out.shape == (26, 8) and np.allclose(out, 1.0)


def test_options_are_validated():
    with pytest.raises(BenchError, match="multiple of n_heads"):
        make_options(Options, {"hidden": "30", "n_heads": "4"}, "sasrec")
    with pytest.raises(BenchError, match="dropout"):
        make_options(Options, {"dropout": "1.5"}, "sasrec")
    assert make_options(Options, {"epochs": "3"}, "sasrec").epochs == 3
    assert set(sasrec.PRESET_OPTIONS) == {"quick", "cpu", "paper"}
    assert all(o.hidden == 32 and o.max_length == 20 for o in sasrec.PRESET_OPTIONS.values())
