"""`opq`: RPG's OPQ + IVF1 + PQ item codes (faiss), on a tiny synthetic catalogue."""

import numpy as np
import pytest

from bench.datasets import SyntheticSpec, leave_one_out, make_synthetic
from bench.errors import BenchError
from bench.tokenizers.base import FitContext
from bench.tokenizers import opq as opq_module
from bench.tokenizers.opq import (PRESET_OPTIONS, OPQOptions, OPQTokenizer, codebooks, decode_levels, encoder_input,
                                  index_codes, last_digit_costs, training_items)

N_ITEMS, DIM = 120, 16
SMALL = {"digits": 4, "codebook_size": 16, "pca_dim": 0}  # the raw 16-d vectors


@pytest.fixture(scope="module")
def data():
    d = make_synthetic(SyntheticSpec(n_items=N_ITEMS, n_users=40, seed=1))
    return d, leave_one_out(d)


def _x(seed=0, dim=DIM):
    return np.random.default_rng(seed).standard_normal((N_ITEMS, dim)).astype(np.float32)


def _fit(data, x=None, seed=0, **options):
    x = _x() if x is None else x
    tok = OPQTokenizer(**{**SMALL, **options})
    tok.fit(FitContext(data[0], data[1], seed, text_embeddings=lambda: x, log=lambda s: None))
    return tok, x


def _levels(tok, K):
    """Per-digit codes back from token ids (codes without a numbering token)."""
    codes = np.array(tok.codes, dtype=np.int64)
    return codes - np.arange(codes.shape[1]) * K


def test_class_and_presets():
    assert OPQTokenizer.name == "opq" and OPQTokenizer.needs_text
    assert PRESET_OPTIONS["paper"] == {"digits": 32, "codebook_size": 256}
    for preset in ("quick", "cpu", "paper"):  # every preset whitens a 128-d PCA first, as the release's sentence-t5 config
        assert OPQOptions(**PRESET_OPTIONS[preset]).pca_dim == 128
    with pytest.raises(BenchError, match="power of two"):
        OPQTokenizer(codebook_size=100)
    with pytest.raises(BenchError, match="collisions must be one of"):
        OPQTokenizer(collisions="bogus")


def test_codes_are_the_codes_faiss_stores(data):
    tok, x = _fit(data, collisions="keep")
    stored = index_codes(tok.index, x)  # read back from the inverted list after index.add
    assert stored.shape == (N_ITEMS, 4) and stored.max() < 16
    assert np.array_equal(_levels(tok, 16), stored)
    # ...which is the PQ's own encoding of the OPQ-rotated residual (IVF1 encodes residuals)
    ivf = opq_module._parts(tok.index)[1]
    assert ivf.by_residual
    import faiss

    own = faiss.unpack_bitstrings(ivf.pq.compute_codes(encoder_input(tok.index, x)), 4, 4)
    assert np.array_equal(own, stored)
    # and the last digit's costs rank the stored code first
    assert np.array_equal(last_digit_costs(tok.index, x).argmin(1), stored[:, -1])


def test_quantiser_is_trained_on_training_split_items_only(data, monkeypatch):
    split = data[1]
    seen = []
    real = opq_module.train_index
    monkeypatch.setattr(opq_module, "train_index", lambda xt, *a: seen.append(xt.copy()) or real(xt, *a))
    tok, x = _fit(data, collisions="keep")
    train = sorted({i for seq in split.train_sequences for i in seq})
    assert np.array_equal(training_items(FitContext(data[0], split, 0)), train)
    assert len(seen) == 1 and np.array_equal(seen[0], x[train])
    held_out = np.setdiff1d(np.arange(N_ITEMS), train)
    assert len(held_out) and np.isin(held_out, np.concatenate([split.valid.targets, split.test.targets])).any()
    # moving the embeddings of items outside the training split changes neither the codebooks
    # nor any training item's code
    x2 = x.copy()
    x2[held_out] = np.random.default_rng(7).standard_normal((len(held_out), DIM)) * 5
    tok2, _ = _fit(data, x=x2, collisions="keep")  # (a numbering token depends on every item)
    assert np.array_equal(codebooks(tok.index), codebooks(tok2.index))
    assert [tok.codes[i] for i in train] == [tok2.codes[i] for i in train]


def test_reconstruction_beats_random_codes(data):
    tok, x = _fit(data, collisions="keep")
    levels = index_codes(tok.index, x)
    err = ((decode_levels(tok.index, levels) - x) ** 2).sum()
    random = np.random.default_rng(0).integers(0, 16, size=levels.shape)
    assert err < 0.6 * ((decode_levels(tok.index, random) - x) ** 2).sum()
    assert err < ((x - x.mean(0)) ** 2).sum()  # better than the mean alone


def test_deterministic_per_seed(data):
    a, _ = _fit(data, seed=3)
    b, _ = _fit(data, seed=3)
    c, _ = _fit(data, seed=4)
    assert a.codes == b.codes and np.array_equal(codebooks(a.index), codebooks(b.index))
    assert not np.array_equal(codebooks(a.index), codebooks(c.index))


def test_dimension_must_divide_into_digits(data):
    with pytest.raises(BenchError, match=r"dimension 16 is not divisible by digits=5"):
        _fit(data, digits=5)
    with pytest.raises(BenchError, match=r"dimension 10 \(after PCA\) is not divisible by digits=4"):
        _fit(data, pca_dim=10)


def test_too_few_training_items_for_the_codebook(data):
    with pytest.raises(BenchError, match="set codebook_size to at most 64"):
        _fit(data, codebook_size=128)


def test_pca_is_fitted_on_training_items(data):
    tok, x = _fit(data, pca_dim=8)
    train = training_items(FitContext(data[0], data[1], 0))
    z = (x[train] - tok.pca["mean"]) @ tok.pca["components"].T / tok.pca["scale"]
    assert np.allclose(z.mean(0), 0, atol=1e-6) and np.allclose(z.std(0, ddof=1), 1, atol=1e-4)  # whitened
    assert tok.max_code_length >= 4


def test_reassign_leaves_no_collisions(data):
    tok, _ = _fit(data, digits=2, codebook_size=32, collisions="reassign")  # no prefix holds > 32 items
    assert tok.collisions_before > 0 and tok.n_collisions == 0
    assert len(set(tok.codes)) == N_ITEMS and tok.max_code_length == 2


def test_more_than_25_digits_get_their_own_spelling(data):
    tok, _ = _fit(data, x=_x(dim=32), digits=32, codebook_size=2)
    assert tok.vocab[:2] == ["<d0_0>", "<d0_1>"] and "<d31_1>" in tok.vocab
    assert len(set(tok.codes)) == N_ITEMS and min(len(c) for c in tok.codes) == 32


def test_save_load_round_trip(data, tmp_path):
    tok, _ = _fit(data, digits=2, codebook_size=16)
    assert tok.collisions_before > 0
    path = tmp_path / "opq.index.json"
    tok.save(path, data[0].item_ids)
    back = OPQTokenizer(**SMALL)
    back.load(path, data[0].item_ids)
    assert back.vocab == tok.vocab and back.codes == tok.codes
    assert (back.n_collisions, back.collisions_before, back.train_items) == \
        (tok.n_collisions, tok.collisions_before, tok.train_items)


def test_faiss_runs_on_one_thread_during_the_fit_only(data, monkeypatch):
    """Multi-threaded faiss beside torch corrupted the heap in OPQ training (FAISS_THREADS)."""
    import faiss

    seen = []
    train = opq_module.train_index

    def spy(*args, **kwargs):
        seen.append(faiss.omp_get_max_threads())
        return train(*args, **kwargs)

    monkeypatch.setattr(opq_module, "train_index", spy)
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(2)
    try:
        _fit(data)
        assert seen == [1] and faiss.omp_get_max_threads() == 2
    finally:
        faiss.omp_set_num_threads(before)


def test_fewer_training_items_than_dimensions_is_refused(data):
    """faiss's OPQ training corrupts the heap (the process aborts) below that; a clear error instead."""
    with pytest.raises(BenchError, match="at least as many training items as embedding dimensions.*pca_dim"):
        _fit(data, x=_x(dim=128), digits=4, codebook_size=16)  # ~116 training items, 128-d
    tok, _ = _fit(data, x=_x(dim=128), digits=4, codebook_size=16, pca_dim=64)
    assert len(set(tok.codes)) == N_ITEMS
