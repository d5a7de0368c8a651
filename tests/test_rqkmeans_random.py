"""`rqkmeans` (residual k-means) and `random` (the control) on tiny hand-made catalogues."""

import numpy as np
import pytest

from bench.datasets import SyntheticSpec, leave_one_out, make_synthetic
from bench.errors import BenchError
from bench.tokenizers import FitContext
from bench.tokenizers.random_codes import PRESET_OPTIONS as RANDOM_PRESETS
from bench.tokenizers.random_codes import RandomOptions, RandomTokenizer
from bench.tokenizers.rqkmeans import PRESET_OPTIONS as RQKMEANS_PRESETS
from bench.tokenizers.rqkmeans import RQKMeansOptions, RQKMeansTokenizer, last_level_costs, residual_kmeans
from bench.tokenizers.tiger import PRESET_OPTIONS as TIGER_PRESETS
from bench.tokenizers.tiger import TigerOptions

N_ITEMS = 64  # 4 coarse x 4 fine groups x 4 items


@pytest.fixture(scope="module")
def data():
    d = make_synthetic(SyntheticSpec(n_items=N_ITEMS, n_users=50))
    return d, leave_one_out(d)


def _ctx(data, x, seed=0, log=None):
    return FitContext(data[0], data[1], seed, text_embeddings=lambda: x, log=log or (lambda s: None))


def _gaussian(seed=0, d=6):
    return np.random.default_rng(seed).standard_normal((N_ITEMS, d)).astype(np.float32)


def _two_scale_clusters():
    """2-D points: 4 coarse centres (+-10, +-10), each split into 4 fine groups (+-1, +-1)."""
    corners = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], dtype=np.float64)
    coarse, fine = np.repeat(np.arange(4), 16), np.tile(np.repeat(np.arange(4), 4), 4)
    noise = 0.05 * np.random.default_rng(0).standard_normal((N_ITEMS, 2))
    return (10 * corners[coarse] + corners[fine] + noise).astype(np.float32), coarse, fine


def _same_partition(a, b) -> bool:
    return len(set(zip(a, b))) == len(set(a)) == len(set(b))


def _level(tok, level):
    return [code[level] for code in tok.codes]


def test_levels_recover_coarse_then_fine_clusters(data):
    x, coarse, fine = _two_scale_clusters()
    # raw residuals: in 2-D, scaling to unit length would fold the fine offsets onto the circle
    tok = RQKMeansTokenizer(levels=2, codebook_size=4, collisions="keep", normalize_residuals=False)
    tok.fit(_ctx(data, x))
    assert _same_partition(_level(tok, 0), coarse)  # level 1 clusters the embeddings
    assert _same_partition(_level(tok, 1), fine)  # level 2 clusters what is left: the fine offsets
    assert tok.n_collisions == tok.collisions_before == N_ITEMS - 16


def test_each_level_clusters_the_residual_of_the_levels_before():
    x = _gaussian()
    codes, centres, last_input = residual_kmeans(x, 3, 5, seed=0, log=lambda s: None)
    residual, errors = x.astype(np.float64), []
    for level, level_centres in enumerate(centres):
        for j in range(len(level_centres)):  # every centre is the mean of the residuals it took
            np.testing.assert_allclose(level_centres[j], residual[codes[:, level] == j].mean(0), atol=1e-6)
        residual = residual - level_centres[codes[:, level]]
        errors.append(float((residual**2).sum()))
    assert errors[0] > errors[1] > errors[2]  # each level brings the sum of centres closer to x
    costs = last_level_costs(last_input, centres)  # what sinkhorn and reassign read: from the last residual
    assert (costs.argmin(1) == codes[:, -1]).all()
    np.testing.assert_allclose(costs.min(1), (residual**2).sum(1), atol=1e-8)


def test_each_level_input_is_scaled_to_unit_length_as_grid_does(data):
    x = _gaussian()
    codes, centres, last_input = residual_kmeans(x, 3, 5, seed=0, normalize=True, log=lambda s: None)
    level_input = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    for level, level_centres in enumerate(centres):
        np.testing.assert_allclose(np.linalg.norm(level_input, axis=1), 1.0, atol=1e-9)
        for j in range(len(level_centres)):  # centres are means of the unit-length inputs
            np.testing.assert_allclose(level_centres[j], level_input[codes[:, level] == j].mean(0), atol=1e-6)
        if level < 2:
            residual = level_input - level_centres[codes[:, level]]
            level_input = residual / np.linalg.norm(residual, axis=1, keepdims=True)
    np.testing.assert_allclose(last_input, level_input, atol=1e-9)
    # the tokenizer's default: an item's codes do not depend on its embedding's length
    assert RQKMeansOptions().normalize_residuals
    scaled = x * np.random.default_rng(1).uniform(0.2, 5.0, size=(len(x), 1)).astype(np.float32)
    fits = []
    for emb in (x, scaled):
        tok = RQKMeansTokenizer(levels=3, codebook_size=5, collisions="keep")
        tok.fit(_ctx(data, emb))
        fits.append(tok.codes)
    assert fits[0] == fits[1]


def test_balanced_levels_have_equal_cluster_sizes(data):
    tok = RQKMeansTokenizer(levels=3, codebook_size=6, balanced=True, collisions="keep")
    tok.fit(_ctx(data, _gaussian()))
    for level in range(3):
        sizes = np.bincount(np.asarray(_level(tok, level)) - 6 * level, minlength=6)
        assert sizes.min() >= N_ITEMS // 6 and sizes.max() <= -(-N_ITEMS // 6), sizes


def test_k_is_clamped_to_distinct_points_and_logged(data):
    x = np.repeat(np.eye(5, dtype=np.float32), [13, 13, 13, 13, 12], axis=0)  # 5 distinct points
    logs: list[str] = []
    tok = RQKMeansTokenizer(levels=2, codebook_size=8, collisions="keep")
    tok.fit(_ctx(data, x, log=logs.append))
    assert len(set(_level(tok, 0))) == 5 and len(set(_level(tok, 1))) == 1  # residuals all 0 at level 2
    assert any("K clamped to 5" in m for m in logs) and any("K clamped to 1" in m for m in logs)


def test_reassign_leaves_no_collisions_when_every_prefix_fits_the_last_codebook(data):
    # balanced level 1: prefixes of 10..11 items <= 12 last-level codes
    tok = RQKMeansTokenizer(levels=2, codebook_size=12, balanced=True, collisions="reassign")
    tok.fit(_ctx(data, _gaussian()))
    assert tok.collisions_before > 0 and tok.n_collisions == 0
    assert len(set(tok.codes)) == N_ITEMS and all(len(c) == 2 for c in tok.codes)  # no numbering token


def test_suffix_gives_every_item_a_numbering_token(data):
    tok = RQKMeansTokenizer(codebook_size=4)
    tok.fit(_ctx(data, _gaussian()))
    assert len(set(tok.codes)) == N_ITEMS and all(len(c) == 4 for c in tok.codes)
    assert all(tok.vocab[c[3]].startswith("<d_") for c in tok.codes)
    assert tok.n_collisions == tok.collisions_before == N_ITEMS - len({c[:3] for c in tok.codes}) > 0


def test_codes_are_deterministic_for_a_seed_and_differ_across_seeds(data):
    def codes(seed, balanced):
        tok = RQKMeansTokenizer(codebook_size=8, balanced=balanced, collisions="keep")
        tok.fit(_ctx(data, _gaussian(d=8), seed=seed))
        return tok.codes

    for balanced in (False, True):
        assert codes(0, balanced) == codes(0, balanced) != codes(1, balanced)


def test_save_load_keeps_codes_and_collision_counts(data, tmp_path):
    tok = RQKMeansTokenizer(codebook_size=4)
    tok.fit(_ctx(data, _gaussian()))
    item_ids = data[0].item_ids
    tok.save(tmp_path / "index.json", item_ids)
    loaded = RQKMeansTokenizer(codebook_size=4)
    loaded.load(tmp_path / "index.json", item_ids)
    assert loaded.codes == tok.codes and loaded.vocab == tok.vocab
    assert loaded.collisions_before == tok.collisions_before > 0 and loaded.n_collisions == tok.n_collisions


def test_options_are_checked():
    with pytest.raises(BenchError, match="collisions must be one of"):
        RQKMeansTokenizer(collisions="bogus")
    with pytest.raises(BenchError, match="levels must be >= 1"):
        RQKMeansTokenizer(levels=0)
    assert RQKMeansTokenizer(balanced="true").options.balanced is True  # from the CLI


def test_presets_give_tiger_shape():
    for preset, tiger in TIGER_PRESETS.items():
        t = TigerOptions(**tiger)
        for options in (RQKMeansOptions(**RQKMEANS_PRESETS[preset]), RandomOptions(**RANDOM_PRESETS[preset])):
            assert (options.levels, options.codebook_size) == (t.levels, t.codebook_size), preset
    assert RQKMEANS_PRESETS["quick"] == RANDOM_PRESETS["quick"] == {"codebook_size": 32}


def test_random_codes_ignore_the_catalogue_and_follow_the_seed(data):
    def codes(seed, x=None):
        tok = RandomTokenizer(codebook_size=8)
        ctx = _ctx(data, x, seed) if x is not None else FitContext(data[0], data[1], seed, log=lambda s: None)
        tok.fit(ctx)  # the plain context has no embeddings: asking for them would raise
        return tok.codes

    assert not RandomTokenizer.needs_text and RandomTokenizer().inputs() == set()
    assert codes(0) == codes(0, _gaussian(1)) == codes(0, _gaussian(2)) != codes(1)
    assert all(len(c) == 4 for c in codes(0)) and len(set(codes(0))) == N_ITEMS  # tiger's numbering level


def test_random_codes_are_uniform_over_each_level():
    big = make_synthetic(SyntheticSpec(n_items=2000, n_users=10))
    tok = RandomTokenizer(levels=3, codebook_size=8, collisions="keep")
    tok.fit(FitContext(big, None, 0, log=lambda s: None))
    for level in range(3):
        counts = np.bincount(np.asarray(_level(tok, level)) - 8 * level, minlength=8)
        assert len(counts) == 8 and counts.min() > 0
        chi2 = float(((counts - 250) ** 2 / 250).sum())
        assert chi2 < 24.3, (level, counts)  # chi-square, 7 degrees of freedom, p = 0.001
    assert tok.n_collisions == 2000 - len(set(tok.codes)) > 0  # 512 tuples for 2000 items: kept


@pytest.mark.parametrize("policy", ["sinkhorn", "reassign"])
def test_random_refuses_policies_that_need_distances(policy):
    with pytest.raises(BenchError, match="random codes have none"):
        RandomTokenizer(collisions=policy)
