"""The run's figures as PNG files, each readable on its own (title, axis labels, legend).
Every function takes frames already loaded, returns the path it wrote, or None when its input
is absent (a run without training history simply has no history plot)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from bench.evaluation.significance import REFERENCE_ROWS, stars  # noqa: E402
from bench.reporting.protocol import mark_p, reference_names  # noqa: E402
from bench.io import atomic_write  # noqa: E402

BAR_METRICS = ("recall", "ndcg")
BAR_KS = (5, 10, 20)
MAX_LEVELS = 6  # text tokenizers have many positions; the first few tell the story
PALETTE = "colorblind"
# every plot and run gives a known row the same place (this order; reference rows last) and the
# same colour (an index into seaborn's colorblind palette: letter and text in distinct hues, the
# reference rows in grey and brown so they read as references); other labels take the spares
KNOWN_COLORS = {"id": 0, "text": 4, "tiger": 2, "letter": 3, "precomputed": 9, "sasrec": 7, "popularity": 5}
KNOWN_ROWS = tuple(KNOWN_COLORS)
SPARE_COLORS = (1, 6, 8)


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=120, metadata={"Software": None}))
    plt.close(fig)
    return Path(path)


def _style() -> None:
    sns.set_theme(style="whitegrid", context="notebook", palette=PALETTE)


def _known(name: str) -> int | None:
    base = name.split(":")[0]  # a `precomputed:PATH` label counts as precomputed
    return KNOWN_ROWS.index(base) if base in KNOWN_ROWS else None


def row_order(names: list[str]) -> list[str]:
    """Tokenizers in KNOWN_ROWS order, then other labels (ablation variants) as they come,
    then the reference rows: the order of every plot and table."""
    names = list(dict.fromkeys(names))
    known = sorted((n for n in names if _known(n) is not None), key=lambda n: (_known(n), n))
    references = [n for n in known if n in REFERENCE_ROWS]
    return [n for n in known if n not in references] + [n for n in names if _known(n) is None] + references


def row_rank(names: pd.Series) -> pd.Series:
    """Each name's place in `row_order`, for sorting a frame by rows."""
    place = {n: i for i, n in enumerate(row_order(list(names)))}
    return names.map(place)


def row_colors(names: list[str]) -> dict[str, tuple[float, float, float]]:
    """{row: colour} in `row_order`: known rows keep their colour in every plot and run,
    other labels take the spare colours."""
    palette = sns.color_palette(PALETTE, 10)
    others = [n for n in row_order(names) if _known(n) is None]
    return {n: palette[KNOWN_COLORS[n.split(":")[0]]] if _known(n) is not None
            else palette[SPARE_COLORS[others.index(n) % len(SPARE_COLORS)]] for n in row_order(names)}


def _label(metric: str, k: int) -> str:
    return "MRR" if metric == "mrr" else f"{'NDCG' if metric == 'ndcg' else metric.capitalize()}@{k}"


def metric_bars(sig: pd.DataFrame | None, path: Path, split: str = "test") -> Path | None:
    """Recall and NDCG at 5/10/20 per tokenizer, with the bootstrap 95% CI as error bars."""
    if sig is None or sig.empty:
        return None
    data = sig[(sig["split"] == split) & sig["metric"].isin(BAR_METRICS) & sig["k"].isin(BAR_KS)]
    if data.empty:
        return None
    _style()
    colors = row_colors(list(data["tokenizer"]))
    tokenizers = list(colors)
    metrics = [m for m in BAR_METRICS if m in set(data["metric"])]
    fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4.5), squeeze=False)
    width = 0.8 / len(tokenizers)
    for ax, metric in zip(axes[0], metrics):
        block = data[data["metric"] == metric]
        ks = sorted(block["k"].unique())
        for i, tok in enumerate(tokenizers):
            rows = block[block["tokenizer"] == tok].set_index("k").reindex(ks)
            xs = np.arange(len(ks)) + (i - (len(tokenizers) - 1) / 2) * width
            err = np.vstack([rows["mean"] - rows["ci_low"], rows["ci_high"] - rows["mean"]]).clip(min=0)
            ax.bar(xs, rows["mean"], width, yerr=err, capsize=3, color=colors[tok], label=tok)
        ax.set_xticks(np.arange(len(ks)), [_label(metric, k) for k in ks])
        ax.set_ylabel(f"{_label(metric, 0).split('@')[0]} ({split})")
        ax.set_title(f"{_label(metric, 0).split('@')[0]} per tokenizer (95% bootstrap CI)")
    axes[0][-1].legend(title="tokenizer", bbox_to_anchor=(1.02, 1), loc="upper left")
    return _save(fig, path)


def code_usage_lorenz(usage: dict[str, list[np.ndarray]], path: Path) -> Path | None:
    """Lorenz curve of code usage per level, one panel per tokenizer: the diagonal is a
    codebook used evenly; the further below it, the fewer codes carry the items."""
    usage = {tok: usage[tok] for tok in row_order(list(usage)) if usage[tok]}  # panels in the fixed row order
    if not usage:
        return None
    _style()
    n = len(usage)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.8 * rows), squeeze=False)
    for ax, (tok, levels) in zip(axes.flat, usage.items()):
        for lv, counts in enumerate(levels[:MAX_LEVELS]):
            counts = np.sort(np.asarray(counts, dtype=np.float64))  # ascending, for the Lorenz curve
            if counts.sum() == 0:
                continue
            x = np.linspace(0, 1, len(counts) + 1)
            y = np.concatenate([[0], np.cumsum(counts) / counts.sum()])
            ax.plot(x, y, label=f"level {lv}")
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="even use")
        ax.set_title(tok)
        ax.set_xlabel("share of codes (least used first)")
        ax.set_ylabel("share of items")
        ax.legend(fontsize="small", loc="upper left")
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle("Code usage per level (Lorenz curves)")
    return _save(fig, path)


def entropy_bars(code_stats: pd.DataFrame | None, path: Path) -> Path | None:
    """Normalised entropy (entropy / log codebook size) per level and tokenizer, first seed."""
    if code_stats is None or code_stats.empty:
        return None
    _style()
    first = code_stats[code_stats["seed"] == code_stats.groupby("tokenizer")["seed"].transform("min")]
    first = first[first["level"] < MAX_LEVELS]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = row_colors(list(first["tokenizer"]))
    sns.barplot(first, x="level", y="normalized_entropy", hue="tokenizer", hue_order=list(colors), palette=colors, ax=ax)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("code level")
    ax.set_ylabel("entropy / log(codebook size)")
    ax.set_title("How evenly each level's codebook is used (1 = evenly)")
    ax.legend(title="tokenizer", bbox_to_anchor=(1.02, 1), loc="upper left")
    return _save(fig, path)


def history_curves(history: pd.DataFrame | None, path: Path) -> Path | None:
    """Validation NDCG per training epoch, one line per tokenizer (band: spread over seeds)."""
    if history is None or history.empty:
        return None
    cols = [c for c in history.columns if c.startswith("valid_ndcg")]
    if not cols:
        return None
    col = "valid_ndcg@10" if "valid_ndcg@10" in cols else cols[0]
    data = history.dropna(subset=[col])
    if data.empty:
        return None
    _style()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = row_colors(list(data["tokenizer"]))
    sns.lineplot(data, x="epoch", y=col, hue="tokenizer", hue_order=list(colors), palette=colors, errorbar="sd",
                 marker="o", ax=ax)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(col.replace("valid_ndcg", "validation NDCG"))
    ax.set_title("Validation NDCG during backbone training")
    ax.legend(title="tokenizer", bbox_to_anchor=(1.02, 1), loc="upper left")
    return _save(fig, path)


def effect_matrix(sig: pd.DataFrame | None, path: Path) -> Path | None:
    """Relative difference to the reference (%) per tokenizer and metric, with Holm-corrected
    significance marks (* p<0.05, ** p<0.01, *** p<0.001)."""
    if sig is None or sig.empty:
        return None
    data = sig[sig["tokenizer"] != sig["reference"]].copy()
    if data.empty:
        return None
    _style()
    data["column"] = [_label(m, k) for m, k in zip(data["metric"], data["k"])]
    rank = {"recall": 0, "ndcg": 1, "mrr": 2}  # the order of the report's tables
    pairs = sorted(set(zip(data["metric"], data["k"])), key=lambda mk: (rank.get(mk[0], 3), mk[0], mk[1]))
    order = [_label(m, k) for m, k in pairs]
    rows = row_order(list(data["tokenizer"]))
    values = data.pivot_table(index="tokenizer", columns="column", values="rel_diff").reindex(index=rows, columns=order) * 100
    marks = data.assign(mark=[stars(p) for p in mark_p(data)]).pivot(index="tokenizer", columns="column", values="mark")
    marks = marks.reindex(index=rows, columns=order).fillna("")
    text = values.map(lambda v: "" if pd.isna(v) else f"{v:+.1f}%") + marks
    limit = float(np.nanmax(np.abs(values.to_numpy()))) if np.isfinite(values.to_numpy()).any() else 1.0
    fig, ax = plt.subplots(figsize=(1.1 * len(order) + 3, 0.6 * len(rows) + 2))
    sns.heatmap(values, annot=text, fmt="", cmap="RdBu", center=0, vmin=-limit, vmax=limit, ax=ax,
                cbar_kws={"label": "difference to reference (%)"}, linewidths=0.5)
    ax.set_xlabel("metric")
    ax.set_ylabel("tokenizer")
    test = "seed-aware test" if "p_seed_holm" in data.columns and data["p_seed_holm"].notna().any() else "paired t-test"
    ax.set_title(f"Relative difference to {reference_names(data)} ({test}, Holm: * <.05, ** <.01, *** <.001)")
    return _save(fig, path)


def ablation_bars(metrics: pd.DataFrame | None, path: Path, split: str = "test",
                  measures: tuple[tuple[str, int], ...] = (("recall", 10), ("ndcg", 10))) -> Path | None:
    """One horizontal bar per ablation variant (a `variant` column, in the frame's order, the
    full model first) and one panel per measure, mean +/- sd over seeds; a dashed line marks
    the full model so each loss's contribution reads as a distance from it."""
    if metrics is None or metrics.empty or "variant" not in metrics.columns:
        return None
    order = list(dict.fromkeys(metrics["variant"]))
    panels = []
    for metric, k in measures:
        part = metrics[(metrics["metric"] == metric) & (metrics["k"] == k) & (metrics["split"] == split)]
        if not part.empty:
            panels.append((_label(metric, k), part))
    if not panels:
        return None
    _style()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels) + 3, 0.55 * len(order) + 1.5), sharey=True,
                             squeeze=False)
    for ax, (name, part) in zip(axes[0], panels):
        sns.barplot(part, y="variant", x="value", order=order, errorbar="sd", capsize=0.2, color="#4c72b0", ax=ax)
        full = part[part["variant"] == order[0]]["value"].mean()
        ax.axvline(full, color="black", linestyle="--", linewidth=1)
        # values inside the bars: at their ends they would collide with the line and error bars
        ax.bar_label(ax.containers[0], fmt="%.3f", label_type="center", color="white", fontsize=9)
        ax.set_xlim(0, part["value"].max() * 1.18)
        ax.set_xlabel(f"{name} ({split}, mean ± sd over seeds)")
        ax.set_ylabel("")
        ax.set_title(name)
    fig.suptitle("LETTER ablation (dashed line: full model)")
    return _save(fig, path)
