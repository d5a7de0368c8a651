"""The RQ-VAE's science: each loss term by hand, Sinkhorn balance, constrained k-means."""

import math

import numpy as np
import pytest
import torch

from bench.tokenizers.kmeans import constrained_assign, feasible_bounds, size_constrained_kmeans
from bench.tokenizers.rqvae import (RQVAE, RQVAEConfig, TrainConfig, assign, cf_loss, codebook_loss,
                                    collision_rate, commitment_loss, diversity_loss, reconstruction_loss,
                                    rescale_to_unit, sample_positives, train_rqvae)


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
    centres, labels = size_constrained_kmeans(x, 10, 10, 60, seed=0)
    sizes = np.bincount(labels, minlength=10)
    assert centres.shape == (10, 8) and sizes.sum() == 256
    assert sizes.min() >= 10 and sizes.max() <= 60
    # a distance matrix preferring cluster 0 for everyone still gets the bounds
    dist = np.tile([0.0, 1.0, 2.0], (12, 1))
    assert np.bincount(constrained_assign(dist, 3, 5), minlength=3).tolist() == [5, 4, 3]
    with pytest.raises(ValueError):
        constrained_assign(dist, 5, 6)


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


def test_kmeans_init_places_codes_on_the_data():
    model = _tiny_model()
    x = torch.randn(50, 6)
    model.init_codebooks(x, seed=0)
    z = model.encoder(x).detach()
    # every level-0 code lies within the spread of the latents (not the tiny uniform init)
    assert model.codebooks[0].detach().abs().max() <= z.abs().max() + 1e-4
    assert model.codebooks[0].detach().std() > 0.1 * z.std()


def test_sinkhorn_plan_is_balanced_and_survives_underflow():
    from bench.tokenizers.rqvae import sinkhorn

    gen = torch.Generator().manual_seed(1)
    d = rescale_to_unit(torch.rand(64, 8, generator=gen))
    q = sinkhorn(d, 0.003, 50)
    assert torch.allclose(q.sum(0), torch.full((8,), 1 / 8, dtype=q.dtype))  # each code gets 1/N
    # an epsilon so small that exp() underflows: the log-space fallback still gives a plan
    q = sinkhorn(d, 1e-4, 50)
    assert torch.isfinite(q).all() and torch.allclose(q.sum(0), torch.full((8,), 1 / 8, dtype=q.dtype))
