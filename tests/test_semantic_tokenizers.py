"""`tiger` and `letter` end to end on a tiny catalogue with random embeddings."""

import numpy as np
from accelerate.utils import set_seed
import pytest
import torch

from bench.datasets import SyntheticSpec, leave_one_out, make_synthetic
from bench.errors import BenchError
from bench.tokenizers import TOKENIZERS, FitContext, make_tokenizer
from bench.tokenizers.letter import PRESET_OPTIONS as LETTER_PRESETS
from bench.tokenizers.letter import LetterOptions, export_codes
from bench.tokenizers.rqvae import RQVAE, RQVAEConfig
from bench.tokenizers.tiger import PRESET_OPTIONS as TIGER_PRESETS
from bench.tokenizers.tiger import TigerOptions

N_ITEMS = 60
TINY = {"codebook_size": 8, "hidden": "16", "latent_dim": 4, "epochs": 2, "batch_size": 16, "kmeans_iters": 5}


@pytest.fixture(scope="module")
def data():
    d = make_synthetic(SyntheticSpec(n_items=N_ITEMS, n_users=50))
    return d, leave_one_out(d)


def _ctx(data, x=None, h=None, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N_ITEMS, 12)).astype(np.float32) if x is None else x
    h = rng.standard_normal((N_ITEMS, 4)).astype(np.float32) if h is None else h
    return FitContext(data[0], data[1], seed, text_embeddings=lambda: x, cf_embeddings=lambda: h, log=lambda s: None)


def test_registered():
    assert TOKENIZERS["tiger"].needs_text and TOKENIZERS["letter"].needs_text


def test_tiger_fits_distinct_codes_with_a_fourth_level(data):
    tok = make_tokenizer("tiger", TINY)
    tok.fit(_ctx(data))
    assert len(tok.codes) == N_ITEMS and len(set(tok.codes)) == N_ITEMS
    assert all(len(c) == 4 for c in tok.codes)  # 3 levels + the numbering token, for every item
    assert tok.vocab[:3] == ["<a_0>", "<a_1>", "<a_2>"] and tok.vocab[tok.codes[0][3]].startswith("<d_")
    assert len(tok.history) == 2 and sum(r.get("selected", 0) for r in tok.history) == 1


def test_letter_fits_distinct_codes_under_suffix(data):
    tok = make_tokenizer("letter", {**TINY, "n_clusters": 2, "cluster_min": 2, "cluster_max": 6})
    tok.fit(_ctx(data))
    assert len(set(tok.codes)) == N_ITEMS
    assert {"cf", "div", "collision_rate"} <= set(tok.history[0])
    assert tok.n_collisions <= tok.collisions_before


def test_letter_keep_reports_collisions_and_suffix_removes_them(data):
    # 2 codes x 2 levels = 4 tuples for 60 items: collisions are certain
    small = {**TINY, "levels": 2, "codebook_size": 2, "n_clusters": 1}
    keep = make_tokenizer("letter", {**small, "collisions": "keep"})
    keep.fit(_ctx(data))
    assert keep.n_collisions == N_ITEMS - len(set(keep.codes)) >= N_ITEMS - 4
    suffix = make_tokenizer("letter", {**small, "collisions": "suffix"})
    suffix.fit(_ctx(data))
    assert suffix.n_collisions == keep.n_collisions  # same seed, same codes before the policy
    assert len(set(suffix.codes)) == N_ITEMS  # zero collisions under `suffix`


def test_export_rounds_reduce_collisions():
    torch.manual_seed(0)
    model = RQVAE(RQVAEConfig(d_in=5, hidden=(8,), latent_dim=3, codebook_sizes=(2, 16)))
    x = np.random.default_rng(0).standard_normal((30, 5)).astype(np.float32)
    model.init_codebooks(torch.as_tensor(x), seed=0)
    with torch.no_grad():  # squeeze the last level so argmin piles items on few codes
        model.codebooks[1].mul_(10)
    levels, before = export_codes(model, x, rounds=20)
    after = len(levels) - len(np.unique(levels, axis=0))
    assert before > 0 and after < before
    assert np.array_equal(levels[:, 0], model.encode(x)[:, 0].numpy())  # only the last level moves
    unchanged, _ = export_codes(model, x, rounds=0)
    assert len(unchanged) - len(np.unique(unchanged, axis=0)) == before


def test_letter_alpha_zero_trains_without_cf_but_measures_on_it(data):
    """alpha 0: the CF embeddings never reach training (same codes whatever they are); they
    only serve the diagnostic of how often CF neighbours share a level-0 code."""
    options = {**TINY, "alpha": 0, "n_clusters": 2, "cluster_min": 2, "cluster_max": 6}
    rng = np.random.default_rng(5)
    fits = []
    for h in (rng.standard_normal((N_ITEMS, 4)), rng.standard_normal((N_ITEMS, 7))):
        tok = make_tokenizer("letter", options)
        set_seed(0)  # as the runner does before a fit
        tok.fit(_ctx(data, h=h.astype(np.float32)))
        fits.append(tok)
    assert fits[0].codes == fits[1].codes and "cf" not in fits[0].history[0]
    assert fits[0].diagnostics != fits[1].diagnostics
    assert set(fits[0].diagnostics) == {"cf_neighbours_share_code0", "random_pairs_share_code0"}
    assert make_tokenizer("letter", options).inputs() == {"text_embeddings", "cf_embeddings"}


def test_letter_rejects_cf_dimension_mismatch(data):
    h = np.zeros((N_ITEMS, 7), dtype=np.float32)
    tok = make_tokenizer("letter", TINY)
    with pytest.raises(BenchError, match="dimension 7.*latent dimension is 4"):
        tok.fit(_ctx(data, h=h))


def test_bad_text_embeddings_are_a_bench_error(data):
    with pytest.raises(BenchError, match="shape"):
        make_tokenizer("tiger", TINY).fit(_ctx(data, x=np.zeros((3, 12), dtype=np.float32)))


def test_options_are_validated():
    with pytest.raises(BenchError, match="select"):
        make_tokenizer("tiger", {"select": "best"})
    with pytest.raises(BenchError, match="collisions"):
        make_tokenizer("letter", {"collisions": "drop"})
    with pytest.raises(BenchError, match="hidden"):
        make_tokenizer("letter", {"hidden": "512,x"})
    assert make_tokenizer("letter", {"epochs": "3"}).options.epochs == 3  # CLI strings converted


def test_defaults_are_the_paper_values_and_presets_are_valid():
    t, letter = TigerOptions(), LetterOptions()
    assert (t.levels, t.codebook_size, t.latent_dim, t.beta_commit) == (3, 256, 32, 0.25)
    assert (letter.levels, letter.codebook_size, letter.alpha, letter.beta, letter.n_clusters) == (4, 256, 0.02, 1e-4, 10)
    assert (letter.sinkhorn_epsilon, letter.sinkhorn_iters, letter.export_rounds) == (0.003, 50, 20)
    for presets, name in ((TIGER_PRESETS, "tiger"), (LETTER_PRESETS, "letter")):
        assert set(presets) == {"quick", "cpu", "paper"}
        for overrides in presets.values():
            make_tokenizer(name, dict(overrides))
