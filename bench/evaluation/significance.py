"""Is a difference between tokenizers real, and how large is it? The unit is the test user,
paired across tokenizers (every tokenizer is scored on the same users). With thousands of
users tiny differences come out significant, so effect sizes sit next to the p-values."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from bench.errors import BenchError
from bench.options import check

REFERENCE_ROWS = ("popularity", "sasrec")  # baselines the runner adds next to the tokenizers
PER_USER_KEYS = ["dataset", "tokenizer", "seed", "split", "user"]
# item-level metrics only: code-level columns (code_recall@10, ...) of tokenizers that keep
# collisions are reported beside them, not tested (other rows have none)
METRIC_COLUMN = re.compile(r"^(?!code_)(?P<metric>[a-z_]+)(?:@(?P<k>\d+))?$")
MRR_K = 20  # metrics.csv stores MRR with k = 20 (the longest ranking)

SIGNIFICANCE_COLUMNS = ["dataset", "split", "metric", "k", "tokenizer", "reference", "n_users", "n_seeds",
                        "mean", "ref_mean", "ci_low", "ci_high", "diff", "rel_diff", "d_z",
                        "p_ttest", "p_perm", "p_holm", "p_perm_holm", "se_seed", "df_seed", "p_seed", "p_seed_holm"]


@dataclass
class SignificanceOptions:
    """`p_holm` is the Holm-corrected t-test p-value (the t-test resolves small p-values that
    a finite randomisation test cannot); `p_perm_holm` corrects the randomisation test."""

    reference: str | None = None  # default: `letter` when present, else the first tokenizer
    references: dict[str, str] = field(default_factory=dict)  # row -> its own reference, where not `reference`
    split: str = "test"
    confidence: float = 0.95
    n_bootstrap: int = 2000
    n_resamples: int = 10000
    seed: int = 0

    def __post_init__(self) -> None:
        check(0 < self.confidence < 1, "confidence must be in (0, 1)")
        check(self.n_bootstrap >= 100, "n_bootstrap must be >= 100")
        check(self.n_resamples >= 100, "n_resamples must be >= 100")


def metric_columns(per_user: pd.DataFrame) -> dict[str, tuple[str, int]]:
    """Column name -> (metric, k) for the metric columns of per_user.csv (recall@5, mrr, ...)."""
    found = {}
    for col in per_user.columns:
        if col in PER_USER_KEYS:
            continue
        m = METRIC_COLUMN.match(col)
        if m:
            k = int(m.group("k")) if m.group("k") else MRR_K
            found[col] = (m.group("metric"), k)
    return found


def long_per_user(per_user: pd.DataFrame) -> pd.DataFrame:
    """per_user.csv melted to dataset, tokenizer, seed, split, user, metric, k, value."""
    cols = metric_columns(per_user)
    frame = per_user.melt(id_vars=PER_USER_KEYS, value_vars=list(cols), var_name="column", value_name="value")
    frame["metric"] = frame["column"].map(lambda c: cols[c][0])
    frame["k"] = frame["column"].map(lambda c: cols[c][1])
    return frame.drop(columns="column")


def default_reference(tokenizers: list[str]) -> str:
    if "letter" in tokenizers:
        return "letter"
    candidates = [t for t in tokenizers if t not in REFERENCE_ROWS] or tokenizers
    return candidates[0]


def bootstrap_ci(values: np.ndarray, confidence: float = 0.95, n_resamples: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean over users (seeded, so a rerun gives the same CI)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2 or np.all(values == values[0]):
        return float(values.mean()), float(values.mean())
    res = stats.bootstrap((values,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                          method="percentile", vectorized=True, batch=200, rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _mean(d: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(d, axis=axis)


def paired_tests(x: np.ndarray, y: np.ndarray, n_resamples: int = 10000, seed: int = 0) -> dict[str, float]:
    """Paired t-test and paired randomisation test (signs of the per-user differences flipped
    at random) of x against y, plus effect sizes."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    d = x - y
    diff = float(d.mean())
    ref_mean = float(y.mean())
    sd = float(d.std(ddof=1)) if len(d) > 1 else 0.0
    out = {"diff": diff,
           "rel_diff": diff / ref_mean if ref_mean != 0 else np.nan,
           "d_z": diff / sd if sd > 0 else (0.0 if diff == 0 else np.nan),
           "p_ttest": np.nan, "p_perm": np.nan}
    if len(d) < 2:
        return out
    if sd == 0:  # identical differences: no evidence either way if zero, otherwise a sure shift
        out["p_ttest"] = out["p_perm"] = 1.0 if diff == 0 else 0.0
        return out
    out["p_ttest"] = float(stats.ttest_rel(x, y).pvalue)
    out["p_perm"] = float(permutation_pvalue(x, y, n_resamples, seed))
    return out


def permutation_pvalue(x: np.ndarray, y: np.ndarray, n_resamples: int = 10000, seed: int = 0) -> float:
    """Paired randomisation test: scipy's permutation_test on the per-user differences, one
    sample with permutation_type='samples' (scipy then flips the sign of each difference, which
    is swapping the pair). Users with a zero difference are left out: flipping zero changes
    nothing and the test statistic only rescales, so the null distribution and the p-value are
    the same, and with mostly-zero ranking metrics the test is many times faster."""
    d = np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64)
    d = d[d != 0]
    if len(d) < 2:  # no difference, or one: flipping its sign gives the same |mean|, so p = 1
        return 1.0
    res = stats.permutation_test((d,), _mean, permutation_type="samples", vectorized=True,
                                 n_resamples=n_resamples, batch=max(1, min(1000, 4_000_000 // len(d))),
                                 alternative="two-sided", rng=np.random.default_rng(seed))
    return float(res.pvalue)


def seed_aware_test(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """A test of mean(x) - mean(y) that carries the variance between training runs (seeds).

    x [n_seeds_x, n_users], y [n_seeds_y, n_users]: per-seed per-user values of two rows on the
    same users. Model (a linear mixed model with crossed random effects): value = mu + effect
    of the row + user + user x row + run (row x seed) + noise. On this balanced design its
    method-of-moments estimate of Var(difference of means) is
        Var_u(d_u) / n_users + s_x^2 / n_x + s_y^2 / n_y,
    d_u the per-user difference of seed-averaged values (user sampling, as the paired t-test),
    s^2 the variance of a row's per-seed means (training variance; users cancel in it), with
    Satterthwaite's degrees of freedom. With one seed in either row the training variance
    cannot be estimated: NaN."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    out = {"se_seed": np.nan, "df_seed": np.nan, "p_seed": np.nan}
    n_x, n_y, n_users = len(x), len(y), x.shape[1]
    if n_x < 2 or n_y < 2 or n_users < 2:
        return out
    d = x.mean(0) - y.mean(0)
    parts = [(d.var(ddof=1) / n_users, n_users - 1), (x.mean(1).var(ddof=1) / n_x, n_x - 1),
             (y.mean(1).var(ddof=1) / n_y, n_y - 1)]
    var = sum(v for v, _ in parts)
    diff = float(d.mean())
    if var == 0:
        out.update(se_seed=0.0, p_seed=1.0 if diff == 0 else 0.0)
        return out
    df = var**2 / sum(v**2 / dof for v, dof in parts if v > 0)
    t = diff / np.sqrt(var)
    out.update(se_seed=float(np.sqrt(var)), df_seed=float(df), p_seed=float(2 * stats.t.sf(abs(t), df)))
    return out


def holm(pvalues: pd.Series) -> pd.Series:
    """Holm-corrected p-values over the finite entries (NaN stays NaN)."""
    out = pd.Series(np.nan, index=pvalues.index)
    ok = pvalues.notna()
    if ok.any():
        out[ok] = multipletests(pvalues[ok].to_numpy(), method="holm")[1]
    return out


def significance(per_user: pd.DataFrame, options: SignificanceOptions | None = None) -> pd.DataFrame:
    """significance.csv: one row per dataset, metric@k and tokenizer (the reference included,
    with empty tests). Per-user values are averaged over seeds before testing."""
    opt = options or SignificanceOptions()
    missing = [c for c in PER_USER_KEYS if c not in per_user.columns]
    if missing:
        raise BenchError(f"per_user.csv lacks columns {missing}")
    frame = per_user[per_user["split"] == opt.split]
    if frame.empty:
        raise BenchError(f"per_user.csv has no rows for split {opt.split!r}")
    tokenizers = list(dict.fromkeys(frame["tokenizer"]))
    reference = opt.reference or default_reference(tokenizers)
    for ref in {reference, *(r for t, r in opt.references.items() if t in tokenizers)}:
        if ref not in tokenizers:
            raise BenchError(f"reference {ref!r} is not in the run (tokenizers: {', '.join(tokenizers)})")
    data = long_per_user(frame)
    n_seeds = data.groupby(["dataset", "tokenizer"])["seed"].nunique()
    users = (data.groupby(["dataset", "metric", "k", "tokenizer", "user"], sort=False)["value"].mean())
    per_seed = data.set_index(["dataset", "metric", "k", "tokenizer", "seed", "user"])["value"].sort_index()
    rows = []
    for (dataset, metric, k), block in users.groupby(level=["dataset", "metric", "k"], sort=True):
        table = block.droplevel(["dataset", "metric", "k"]).unstack("tokenizer")
        for i, tok in enumerate(t for t in tokenizers if t in table.columns):
            ref = opt.references.get(tok, reference)
            pair = table[[c for c in dict.fromkeys([tok, ref]) if c in table.columns]].dropna()
            x = pair[tok].to_numpy()
            lo, hi = bootstrap_ci(x, opt.confidence, opt.n_bootstrap, opt.seed + i)
            row = {"dataset": dataset, "split": opt.split, "metric": metric, "k": int(k), "tokenizer": tok,
                   "reference": ref, "n_users": len(x), "n_seeds": int(n_seeds[(dataset, tok)]),
                   "mean": float(x.mean()) if len(x) else np.nan, "ci_low": lo, "ci_high": hi}
            if ref in table.columns:
                y = pair[ref].to_numpy()
                row["ref_mean"] = float(y.mean()) if len(y) else np.nan
                if tok != ref:
                    row.update(paired_tests(x, y, opt.n_resamples, opt.seed))
                    row.update(seed_aware_test(_seed_matrix(per_seed, dataset, metric, k, tok, pair.index),
                                               _seed_matrix(per_seed, dataset, metric, k, ref, pair.index)))
            rows.append(row)
    out = pd.DataFrame(rows).reindex(columns=SIGNIFICANCE_COLUMNS)
    out["p_holm"] = holm(out["p_ttest"])
    out["p_perm_holm"] = holm(out["p_perm"])
    out["p_seed_holm"] = holm(out["p_seed"])
    return out


def _seed_matrix(per_seed: pd.Series, dataset: str, metric: str, k: int, tokenizer: str, users: pd.Index) -> np.ndarray:
    """[n_seeds, n_users] values of one row, users in the given order; seeds that lack any of
    these users are left out (a killed run's partial seed)."""
    table = per_seed.loc[(dataset, metric, k, tokenizer)].unstack("user")
    return table.reindex(columns=users).dropna().to_numpy()


def seed_summary(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean +/- std (ddof 1; 0 with one seed) of each metric across seeds, from metrics.csv."""
    keys = ["dataset", "tokenizer", "split", "metric", "k"]
    missing = [c for c in [*keys, "seed", "value"] if c not in metrics.columns]
    if missing:
        raise BenchError(f"metrics.csv lacks columns {missing}")
    grouped = metrics.groupby(keys, sort=False)["value"]
    out = grouped.agg(mean="mean", std="std", n_seeds="count").reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out


def stars(p: float) -> str:
    """Significance marks on a (Holm-corrected) p-value."""
    if p is None or not np.isfinite(p):
        return ""
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else ""
