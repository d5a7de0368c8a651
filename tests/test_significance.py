"""Significance: the p-values are scipy's and statsmodels', CIs are seeded, seeds are averaged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from bench.errors import BenchError
from bench.evaluation.significance import (SignificanceOptions, bootstrap_ci, holm, paired_tests,
                                           permutation_pvalue, seed_summary, significance, stars)


def _mean(d, axis=-1):
    return np.mean(d, axis=axis)


def _pair(n=200, shift=0.03, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.random(n)
    return y + rng.normal(shift, 0.2, n), y


def test_ttest_effect_sizes_equal_their_definitions():
    x, y = _pair()
    out = paired_tests(x, y, n_resamples=500, seed=1)
    d = x - y
    assert out["p_ttest"] == pytest.approx(stats.ttest_rel(x, y).pvalue, rel=1e-12)
    assert out["diff"] == pytest.approx(d.mean())
    assert out["rel_diff"] == pytest.approx(d.mean() / y.mean())
    assert out["d_z"] == pytest.approx(d.mean() / d.std(ddof=1))


def test_permutation_equals_scipy_on_the_differences():
    x, y = _pair()
    x[:50] = y[:50]  # users with no difference are left out; the test must still be scipy's
    d = (x - y)[50:]
    expected = stats.permutation_test((d,), _mean, permutation_type="samples", vectorized=True,
                                      n_resamples=999, rng=np.random.default_rng(7)).pvalue
    assert permutation_pvalue(x, y, n_resamples=999, seed=7) == expected
    assert paired_tests(x, y, n_resamples=999, seed=7)["p_perm"] == expected


def test_exact_permutation_equals_scipy_paired_two_sample_test():
    """With few users scipy enumerates every pairing, so zero differences cannot matter."""
    x, y = _pair(n=12, seed=3)
    x[:3] = y[:3]
    expected = stats.permutation_test((x, y), lambda a, b, axis: np.mean(a - b, axis=axis),
                                      permutation_type="samples", vectorized=True, n_resamples=10000).pvalue
    assert permutation_pvalue(x, y, n_resamples=10000) == pytest.approx(expected, rel=1e-12)


def test_one_user_with_a_difference_gives_p_one_as_scipy_would_with_the_zeros():
    """Every user but one tied (a small test set of two weak models): the sign flip of the one
    difference gives the same |mean|, so p = 1 (scipy's two-sample form, zeros kept, agrees)."""
    x, y = np.zeros(30), np.zeros(30)
    x[4] = 0.5
    expected = stats.permutation_test((x, y), lambda a, b, axis: np.mean(a - b, axis=axis),
                                      permutation_type="samples", vectorized=True, n_resamples=999,
                                      rng=np.random.default_rng(0)).pvalue
    assert permutation_pvalue(x, y) == expected == 1.0
    assert paired_tests(x, y)["p_perm"] == 1.0


def test_holm_equals_statsmodels_and_keeps_nan():
    p = pd.Series([0.01, np.nan, 0.04, 0.002, 0.5])
    ok = p.notna()
    expected = multipletests(p[ok], method="holm")[1]
    out = holm(p)
    assert np.isnan(out[1]) and np.allclose(out[ok], expected)


def test_bootstrap_ci_is_seeded_and_contains_the_mean():
    x = np.random.default_rng(0).random(300)
    a = bootstrap_ci(x, seed=5)
    assert a == bootstrap_ci(x, seed=5)
    assert a != bootstrap_ci(x, seed=6)
    assert a[0] < x.mean() < a[1]
    assert bootstrap_ci(np.zeros(10)) == (0.0, 0.0)


def _per_user(n_users=60, seeds=(0, 1)):
    rng = np.random.default_rng(0)
    rows = []
    for tok, p_hit in [("id", 0.3), ("letter", 0.5), ("popularity", 0.1)]:
        for seed in seeds:
            for user in range(n_users):
                hit = float(rng.random() < p_hit)
                rows.append({"dataset": "synthetic", "tokenizer": tok, "seed": seed, "split": "test", "user": user,
                             "recall@10": hit, "ndcg@10": hit * rng.random(), "mrr": hit * 0.5})
                rows.append({**rows[-1], "split": "valid"})
    return pd.DataFrame(rows)


def test_significance_table():
    per_user = _per_user()
    sig = significance(per_user, SignificanceOptions(n_resamples=500, n_bootstrap=200))
    assert set(sig["reference"]) == {"letter"}  # default reference when present
    assert set(zip(sig["metric"], sig["k"])) == {("recall", 10), ("ndcg", 10), ("mrr", 20)}
    assert len(sig) == 9 and (sig["n_users"] == 60).all() and (sig["n_seeds"] == 2).all()
    ref_rows = sig[sig["tokenizer"] == "letter"]
    assert ref_rows["p_ttest"].isna().all() and ref_rows["p_holm"].isna().all()
    # tests run on per-user values averaged over seeds
    test = per_user[per_user["split"] == "test"]
    avg = test.groupby(["tokenizer", "user"])["ndcg@10"].mean().unstack(0)
    row = sig[(sig["tokenizer"] == "id") & (sig["metric"] == "ndcg")].iloc[0]
    assert row["mean"] == pytest.approx(avg["id"].mean())
    assert row["ref_mean"] == pytest.approx(avg["letter"].mean())
    assert row["p_ttest"] == pytest.approx(stats.ttest_rel(avg["id"], avg["letter"]).pvalue)
    compared = sig[sig["tokenizer"] != "letter"]
    assert np.allclose(compared["p_holm"], multipletests(compared["p_ttest"], method="holm")[1])
    assert (compared["ci_low"] <= compared["mean"]).all() and (compared["mean"] <= compared["ci_high"]).all()


def test_reference_option_and_errors():
    per_user = _per_user(n_users=20, seeds=(0,))
    sig = significance(per_user.drop(columns=["mrr", "recall@10"]), SignificanceOptions(reference="id", n_resamples=200, n_bootstrap=100))
    assert set(sig["reference"]) == {"id"}
    assert default_first_tokenizer(per_user[per_user["tokenizer"] != "letter"]) == "id"
    with pytest.raises(BenchError, match="reference 'tiger'"):
        significance(per_user, SignificanceOptions(reference="tiger"))
    with pytest.raises(BenchError, match="split 'dev'"):
        significance(per_user, SignificanceOptions(split="dev"))


def test_rows_with_their_own_reference():
    # a collision table: each policy against its own tokenizer's suffix row, not the first tokenizer's
    per_user = _per_user(n_users=30, seeds=(0,))
    per_user["tokenizer"] = per_user["tokenizer"].map({"id": "a-suffix", "letter": "a-keep", "popularity": "b-suffix"})
    b_keep = per_user[per_user["tokenizer"] == "a-keep"].assign(tokenizer="b-keep")
    b_keep["ndcg@10"] = b_keep["ndcg@10"] * 0.5
    per_user = pd.concat([per_user, b_keep], ignore_index=True)
    options = SignificanceOptions(reference="a-suffix", references={"a-keep": "a-suffix", "b-keep": "b-suffix"},
                                  n_resamples=200, n_bootstrap=100)
    sig = significance(per_user, options).set_index(["metric", "tokenizer"])
    assert sig.loc[("ndcg", "b-keep"), "reference"] == "b-suffix"
    assert sig.loc[("ndcg", "b-suffix"), "reference"] == "a-suffix"  # rows without their own: the run's
    test = per_user[per_user["split"] == "test"].groupby("tokenizer")["ndcg@10"].mean()
    assert sig.loc[("ndcg", "b-keep"), "diff"] == pytest.approx(test["b-keep"] - test["b-suffix"])
    assert sig.loc[("ndcg", "a-keep"), "diff"] == pytest.approx(test["a-keep"] - test["a-suffix"])
    with pytest.raises(BenchError, match="reference 'c-suffix'"):
        significance(per_user, SignificanceOptions(reference="a-suffix", references={"b-keep": "c-suffix"}))


def default_first_tokenizer(per_user):
    return significance(per_user, SignificanceOptions(n_resamples=100, n_bootstrap=100))["reference"].iloc[0]


def test_seed_summary():
    metrics = pd.DataFrame({"dataset": "d", "tokenizer": ["a", "a", "a", "b"], "seed": [0, 1, 2, 0], "split": "test",
                            "metric": "ndcg", "k": 10, "value": [0.1, 0.2, 0.3, 0.5]})
    out = seed_summary(metrics).set_index("tokenizer")
    assert out.loc["a", "mean"] == pytest.approx(0.2) and out.loc["a", "std"] == pytest.approx(0.1)
    assert out.loc["b", "std"] == 0.0 and out.loc["b", "n_seeds"] == 1


def test_stars():
    assert [stars(p) for p in (0.0001, 0.005, 0.03, 0.2, np.nan)] == ["***", "**", "*", "", ""]


def _runs(n_seeds: int, n_users: int, effect: float, run_sd: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-seed per-user values of two rows: users shared, each training run shifted at random."""
    rng = np.random.default_rng(seed)
    users = rng.normal(0, 1, n_users)
    make = lambda shift: np.stack([shift + rng.normal(0, run_sd) + users + rng.normal(0, 0.5, n_users)  # noqa: E731
                                   for _ in range(n_seeds)])
    return make(effect), make(0.0)


def test_seed_aware_test_carries_training_variance_that_the_per_user_test_ignores():
    """No true difference, large run-to-run variance: averaging seeds and pairing users calls
    the chance difference of the runs significant; the seed-aware test does not."""
    from bench.evaluation.significance import seed_aware_test

    x, y = _runs(3, 2000, effect=0.0, run_sd=0.3, seed=4)
    per_user = stats.ttest_rel(x.mean(0), y.mean(0)).pvalue
    aware = seed_aware_test(x, y)
    assert per_user < 1e-6 and aware["p_seed"] > 0.05
    # a real effect far above the run variance is still found
    x, y = _runs(3, 2000, effect=2.0, run_sd=0.05, seed=4)
    assert seed_aware_test(x, y)["p_seed"] < 0.001
    assert np.isnan(seed_aware_test(x[:1], y)["p_seed"])  # one seed: no training variance to estimate


def test_seed_aware_standard_error_agrees_with_a_fitted_mixed_model():
    """statsmodels' REML fit of the crossed model (user, user x row, run random effects) on a
    small design: our method-of-moments standard error is within 20 % of it."""
    import warnings

    import statsmodels.formula.api as smf

    from bench.evaluation.significance import seed_aware_test

    x, y = _runs(4, 40, effect=0.5, run_sd=0.4, seed=1)
    rows = [{"user": u, "row": name, "run": f"{name}{s}", "value": m[s, u], "is_x": float(name == "x")}
            for name, m in (("x", x), ("y", y)) for s in range(len(m)) for u in range(m.shape[1])]
    frame = pd.DataFrame(rows)
    frame["user_row"] = frame["user"].astype(str) + frame["row"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = smf.mixedlm("value ~ is_x", frame, groups=np.ones(len(frame)),
                          vc_formula={"user": "0 + C(user)", "run": "0 + C(run)", "user_row": "0 + C(user_row)"}).fit(reml=True)
    ours = seed_aware_test(x, y)
    assert fit.params["is_x"] == pytest.approx(x.mean() - y.mean(), rel=1e-6)
    assert ours["se_seed"] == pytest.approx(fit.bse["is_x"], rel=0.2)
