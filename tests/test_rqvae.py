"""The RQ-VAE's science: each loss term by hand, Sinkhorn balance, constrained k-means."""

import math

import numpy as np
import pytest
import torch

from bench.tokenizers import rqvae as rqvae_module
from bench.tokenizers.kmeans import constrained_kmeans, feasible_bounds, init_bounds, init_centres
from bench.tokenizers.rqvae import (RQVAE, RQVAEConfig, assign, cf_loss, codebook_loss, collision_rate,
                                    commitment_loss, diversity_loss, reconstruction_loss, rescale_to_unit,
                                    sample_positives)
from bench.tokenizers.rqvae_train import TrainConfig, train_rqvae


def t(rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_reconstruction_codebook_commitment_by_hand():
    x, x_hat = t([[1.0, 2.0], [0.0, -1.0]]), t([[0.0, 2.0], [1.0, 1.0]])
    # squared errors 1, 0, 1, 4 -> mean 1.5
    assert reconstruction_loss(x_hat, x).item() == pytest.approx(1.5)
    r = t([[1.0, 0.0], [0.0, 2.0]]).requires_grad_()
    e = t([[0.0, 0.0], [0.0, 0.0]]).requires_grad_()
    # ||r - e||^2 elementwise: 1, 0, 0, 4 -> mean 1.25 for both terms
    cb, commit = codebook_loss(r, e), commitment_loss(r, e)
    assert cb.item() == pytest.approx(1.25) and commit.item() == pytest.approx(1.25)
    # the stop-gradients: codebook moves only e, commitment only r
    cb.backward()
    assert r.grad is None and torch.allclose(e.grad, -2 * (r - e).detach() / 4)
    e.grad = None
    commit.backward()
    assert e.grad is None and torch.allclose(r.grad, 2 * (r - e).detach() / 4)


def test_cf_loss_is_in_batch_cross_entropy_by_hand():
    z_q, h = t([[1.0, 0.0], [0.0, 2.0]]), t([[1.0, 1.0], [0.0, 1.0]])
    # logits z_q @ h^T = [[1, 0], [2, 2]]; targets 0, 1
    expected = (-(1 - math.log(math.e + 1)) - (2 - math.log(2 * math.e**2))) / 2
    assert cf_loss(z_q, h).item() == pytest.approx(expected, rel=1e-6)


def test_diversity_loss_with_given_clustering_by_hand():
    codebook = t([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    idx, positives = torch.tensor([0]), torch.tensor([2])
    # e_0 @ E^T = [1, 0, 1], own code masked -> softmax over [0, 1] at codes 1, 2; target 2
    expected = -(1 - math.log(1 + math.e))
    assert diversity_loss(idx, codebook, positives).item() == pytest.approx(expected, rel=1e-6)
    # groups {0, 2}, {1, 3}: the positive is always the other member of the group
    groups = torch.tensor([0, 1, 0, 1])
    gen = torch.Generator().manual_seed(0)
    pos = sample_positives(torch.tensor([0, 1, 2, 3, 0, 2]), groups, gen)
    assert pos.tolist() == [2, 3, 0, 1, 2, 0]
    # bigger groups: never the code itself, always the same group, every other member drawn
    groups = torch.tensor([0, 0, 0, 1, 1, 0])
    pos = sample_positives(torch.zeros(300, dtype=torch.long), groups, gen)
    assert set(pos.tolist()) == {1, 2, 5}


def _tiny_model(**kw) -> RQVAE:
    torch.manual_seed(0)
    return RQVAE(RQVAEConfig(d_in=6, hidden=(5,), latent_dim=3, codebook_sizes=(4, 4), **kw))


def test_model_loss_is_recon_plus_mean_level_terms_plus_cf():
    model = _tiny_model(alpha_cf=0.5, recon_weight=2.0)
    x, h = torch.randn(5, 6), torch.randn(5, 3)
    out = model(x, h)
    z = model.encoder(x)
    r0, e0 = z, model.codebooks[0][out.codes[:, 0]]
    r1, e1 = z - e0, model.codebooks[1][out.codes[:, 1]]
    per_level = [((r - e) ** 2).mean() * 1.25 for r, e in ((r0, e0), (r1, e1))]
    z_q = e0 + e1
    recon = ((model.decoder(z_q) - x) ** 2).mean()
    cf = torch.nn.functional.cross_entropy(z_q @ h.T, torch.arange(5))
    expected = 2.0 * recon + sum(per_level) / 2 + 0.5 * cf
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_cf_gradient_reaches_only_the_encoder_through_straight_through():
    model = _tiny_model()
    x, h = torch.randn(5, 6), torch.randn(5, 3)
    out = model(x, h)
    cf_loss(out.z_q, h).backward()
    assert all(cb.grad is None for cb in model.codebooks)
    assert model.encoder[0].weight.grad.abs().sum() > 0


def test_sinkhorn_spreads_a_skewed_batch_over_codes():
    gen = torch.Generator().manual_seed(0)
    codebook = torch.randn(16, 4, generator=gen)
    # 128 items all near code 0 (plus noise): argmin piles them on very few codes
    r = codebook[0] + 0.3 * torch.randn(128, 4, generator=gen)
    greedy = assign(r, codebook, use_sinkhorn=False)
    balanced = assign(r, codebook, use_sinkhorn=True, epsilon=0.003, iters=50)
    greedy_max = torch.bincount(greedy, minlength=16).max().item()
    balanced_max = torch.bincount(balanced, minlength=16).max().item()
    assert greedy_max >= 60
    assert greedy_max >= 5 * balanced_max  # measured: 123 vs 10 (even would be 8 each)
    assert len(balanced.unique()) >= 2 * len(greedy.unique())  # measured: 16 codes vs 5


def test_rescale_to_unit():
    d = rescale_to_unit(t([[0.0, 4.0], [2.0, 1.0]]))
    assert d.min().item() == pytest.approx(-1, abs=1e-4) and d.max().item() == pytest.approx(1, abs=1e-4)


def test_size_constrained_kmeans_respects_bounds():
    rng = np.random.default_rng(0)
    # skewed data: one dense blob of 200 and a few spread points, so plain k-means is unbalanced
    x = np.concatenate([rng.normal(0, 0.1, (200, 8)), rng.normal(0, 5.0, (56, 8))])
    centres, labels = constrained_kmeans(x, 10, 10, 60, iters=10, restarts=2, seed=0)
    sizes = np.bincount(labels, minlength=10)
    assert centres.shape == (10, 8) and sizes.sum() == 256
    assert sizes.min() >= 10 and sizes.max() <= 60
    with pytest.raises(ValueError):
        constrained_kmeans(x, 10, 30, 60)  # 10 x 30 > 256 points


def test_release_init_bounds():
    assert init_bounds(9922, 256) == (19, 76)  # Instruments: n // 512
    assert init_bounds(1682, 256) == (3, 12)  # ML-100K
    assert init_bounds(100_000, 256) == (50, 200)  # capped at 50


def test_feasible_bounds_for_small_codebooks():
    assert feasible_bounds(256, 10, 10, 60) == (10, 10, 60)  # the paper's setting is unchanged
    k, lo, hi = feasible_bounds(8, 10, 10, 60)
    assert k * lo <= 8 <= k * hi and lo >= 2


def test_training_logs_and_selects_lowest_collision_epoch():
    rng = np.random.default_rng(0)
    x, h = rng.standard_normal((40, 6)).astype(np.float32), rng.standard_normal((40, 3)).astype(np.float32)
    model = _tiny_model(alpha_cf=0.1, beta_div=0.1, n_clusters=2, cluster_min=2, cluster_max=3, kmeans_iters=5,
                        sinkhorn_levels=(1,))
    hist = train_rqvae(model, x, h, TrainConfig(epochs=4, batch_size=16, seed=0, progress=False))
    assert len(hist) == 4 and {"loss", "recon", "codebook", "commit", "div", "cf", "collision_rate"} <= set(hist[0])
    chosen = [r for r in hist if r.get("selected")]
    assert len(chosen) == 1 and chosen[0]["collision_rate"] == min(r["collision_rate"] for r in hist)
    assert collision_rate(model.encode(x)) == pytest.approx(chosen[0]["collision_rate"])
    last = train_rqvae(_tiny_model(), x, None, TrainConfig(epochs=2, batch_size=16, select="last", progress=False))
    assert last[-1].get("selected") == 1.0


def _blob(n: int = 256, seed: int = 0) -> torch.Tensor:
    """A dense blob plus a few far points: plain k-means leaves it unbalanced."""
    gen = torch.Generator().manual_seed(seed)
    return torch.cat([0.05 * torch.randn(n - n // 8, 6, generator=gen), 3 * torch.randn(n // 8, 6, generator=gen)])


@pytest.mark.parametrize("method", ["kmeans", "constrained"])
def test_init_puts_each_codebook_on_the_cluster_centres_of_its_residuals(method):
    """Each level's codebook is exactly init_centres() of that level's residuals; doing
    nothing (or clustering the wrong residuals) fails."""
    model = RQVAE(RQVAEConfig(d_in=6, hidden=(5,), latent_dim=3, codebook_sizes=(8, 8), init=method,
                              kmeans_iters=10, kmeans_restarts=2))
    x = _blob()
    model.init_codebooks(x, seed=3)
    with torch.no_grad():
        z = model.encoder(x)
        level0 = init_centres(z, 8, method, 10, 2, seed=3)
        assert np.allclose(model.codebooks[0].numpy(), level0, atol=1e-6)
        r1 = z - model.codebooks[0][assign(z, model.codebooks[0], False)]
        assert np.allclose(model.codebooks[1].numpy(), init_centres(r1, 8, method, 10, 2, seed=4), atol=1e-6)
        # and it matters: quantisation error of level 0 is far below the uniform start's
        before = RQVAE(model.cfg)
        before.encoder.load_state_dict(model.encoder.state_dict())
        err = lambda cb: torch.cdist(z, cb).min(1).values.mean().item()  # noqa: E731
        assert err(model.codebooks[0]) < 0.7 * err(before.codebooks[0])


def test_constrained_init_uses_more_codes_than_plain_kmeans_on_skewed_data():
    """LETTER's release initialisation balances the codes: on a skewed catalogue every code
    starts with between size_min and size_max items, where plain k-means leaves codes nearly
    empty. Measured (seed 0): constrained 32 of 32 codes used, largest 16 items; kmeans larger."""
    x = _blob(512).numpy()
    size_min, size_max = init_bounds(len(x), 32)
    centres, labels = constrained_kmeans(x, 32, size_min, size_max, 10, 10, seed=0)
    sizes = np.bincount(labels, minlength=32)
    assert sizes.min() >= size_min and sizes.max() <= size_max
    plain = init_centres(x, 32, "kmeans", 100, 1, seed=0)
    plain_sizes = np.bincount(torch.cdist(torch.from_numpy(x), torch.from_numpy(plain)).argmin(1).numpy(), minlength=32)
    assert plain_sizes.max() > size_max  # plain k-means is unbalanced here


def test_sinkhorn_level_is_assigned_by_sinkhorn_at_init_and_in_training_but_not_in_evaluation(monkeypatch):
    calls = []
    real = rqvae_module.assign

    def spy(r, codebook, use_sinkhorn, *args, **kwargs):
        calls.append(bool(use_sinkhorn))
        return real(r, codebook, use_sinkhorn, *args, **kwargs)

    monkeypatch.setattr(rqvae_module, "assign", spy)
    model = RQVAE(RQVAEConfig(d_in=6, hidden=(5,), latent_dim=3, codebook_sizes=(4, 4, 4), sinkhorn_levels=(2,),
                              kmeans_iters=5))
    x = _blob(64)
    model.init_codebooks(x, seed=0)
    assert calls == [False, False, True]
    calls.clear()
    model.train()
    model(x[:16])
    assert calls == [False, False, True]  # training: the last level by Sinkhorn
    calls.clear()
    model.encode(x)
    assert calls == [False, False, False]  # evaluation / export: argmin everywhere
    calls.clear()
    model.eval()
    model(x[:16])
    assert calls == [False, False, False]


def test_diversity_term_is_in_the_loss_and_groups_are_refreshed_every_epoch(monkeypatch):
    model = _tiny_model(beta_div=0.5, n_clusters=2, cluster_min=2, cluster_max=2)
    model.refresh_groups(seed=0)
    x = torch.randn(6, 6)
    gen = torch.Generator().manual_seed(0)
    out = model(x, None, gen)
    # the same forward without the diversity term: the difference is beta_div * mean over levels
    plain = _tiny_model()
    plain.load_state_dict(model.state_dict())
    base = plain(x).loss.item()
    assert out.loss.item() == pytest.approx(base + 0.5 * out.parts["div"], rel=1e-5)
    seeds = []
    real = RQVAE.refresh_groups
    monkeypatch.setattr(RQVAE, "refresh_groups", lambda self, seed: (seeds.append(seed), real(self, seed))[1])
    train_rqvae(model, np.random.default_rng(0).standard_normal((20, 6)).astype(np.float32), None,
                TrainConfig(epochs=3, batch_size=8, seed=0, progress=False))
    assert len(seeds) == 3 and len(set(seeds)) == 3  # once per epoch, a new clustering each time


def test_sinkhorn_plan_is_balanced_and_survives_underflow():
    from bench.tokenizers.rqvae import sinkhorn

    gen = torch.Generator().manual_seed(1)
    d = rescale_to_unit(torch.rand(64, 8, generator=gen))
    q = sinkhorn(d, 0.003, 50)
    assert torch.allclose(q.sum(0), torch.full((8,), 1 / 8, dtype=q.dtype))  # each code gets 1/N
    # an epsilon so small that exp() underflows: the log-space fallback still gives a plan
    q = sinkhorn(d, 1e-4, 50)
    assert torch.isfinite(q).all() and torch.allclose(q.sum(0), torch.full((8,), 1 / 8, dtype=q.dtype))
