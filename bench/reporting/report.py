"""report.md of a run folder, rebuilt from its saved files alone: code statistics and
significance are recomputed (seeded, so a rebuild gives the same tables), the plots redrawn."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import BenchError, DataError
from bench.evaluation.code_stats import code_files, load_index, run_code_stats, sorted_usage
from bench.reporting.ablation import ablation_section
from bench.reporting.format import md_table
from bench.reporting.format import num as _num
from bench.reporting.format import p_text as _p
from bench.reporting.collision_scoring import collision_scoring_section, item_level
from bench.evaluation.significance import (REFERENCE_ROWS, SignificanceOptions, default_reference, seed_summary,
                                           significance, stars)
from bench.io import atomic_write_csv, atomic_write_text
from bench.reporting import plots
from bench.reporting.protocol import mark_p, marks_note, protocol_section, reference_names
from bench.reporting.software import software_section
from bench.reporting.timing import timing_section
from bench.results import has_units, merge_units
from bench.run_files import versions_text

REQUIRED = {
    "metrics.csv": ["dataset", "tokenizer", "seed", "split", "metric", "k", "value"],
    "per_user.csv": ["dataset", "tokenizer", "seed", "split", "user"],
    "history.csv": ["tokenizer", "seed", "epoch"],
    "timings.csv": ["tokenizer", "seed", "stage", "seconds"],
}
TABLE_METRICS = [("recall", 5), ("recall", 10), ("recall", 20), ("ndcg", 5), ("ndcg", 10), ("ndcg", 20), ("mrr", 20)]
EFFECT_METRICS = [("recall", 10), ("ndcg", 10)]


# ---- loading -------------------------------------------------------------------------------

def check_run_dir(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(run_dir, "no such run folder")
    for name in ("config.json", "metrics.csv"):
        if not (run_dir / name).is_file():
            raise DataError(run_dir, f"not a run folder: {name} is missing")
    return run_dir


def load_config(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(path, f"cannot read ({e})") from None
    if not isinstance(config, dict):
        raise DataError(path, "expected a JSON object")
    return config


def load_csv(run_dir: Path, name: str) -> pd.DataFrame | None:
    """A results CSV, or None when the run did not write it; bad files raise DataError."""
    path = Path(run_dir) / name
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(path, f"cannot parse ({e})") from None
    missing = [c for c in REQUIRED.get(name, []) if c not in frame.columns]
    if missing:
        raise DataError(path, f"missing columns {missing}")
    return frame


# ---- analysis ------------------------------------------------------------------------------

def analyse(run_dir: Path, options: SignificanceOptions | None = None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Recompute and write code_stats.csv and significance.csv from the saved files."""
    run_dir = check_run_dir(run_dir)
    stats = run_code_stats(run_dir)
    if not stats.empty:
        atomic_write_csv(run_dir / "code_stats.csv", stats)
    per_user = load_csv(run_dir, "per_user.csv")
    sig = None
    if per_user is not None:
        config = load_config(run_dir)
        opt = options or SignificanceOptions(reference=config.get("reference"), references=config.get("references") or {})
        try:
            sig = significance(per_user, opt)
        except BenchError as e:
            raise DataError(run_dir / "per_user.csv", str(e)) from None
        atomic_write_csv(run_dir / "significance.csv", sig)
    return stats, sig


def _saved_or_computed(run_dir: Path) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """The saved tables, recomputed only when a table the run's files allow is missing."""
    stats = load_csv(run_dir, "code_stats.csv")
    sig = load_csv(run_dir, "significance.csv")
    if (stats is None and code_files(run_dir)) or (sig is None and (run_dir / "per_user.csv").is_file()):
        return analyse(run_dir)
    return stats, sig


def ablation_frame(config: dict[str, Any], metrics: pd.DataFrame) -> pd.DataFrame | None:
    """metrics.csv with a `variant` column when the run is an ablation (config "ablation":
    a {tokenizer label: variant name} mapping, or anything else to use the labels as is)."""
    ablation = config.get("ablation")
    if not ablation:
        return None
    frame = metrics[~metrics["tokenizer"].isin(REFERENCE_ROWS)].copy()
    names = ablation if isinstance(ablation, dict) else {}
    frame["variant"] = [f"{t}: {names[t]}" if t in names else str(t) for t in frame["tokenizer"]]
    rank = {label: i for i, label in enumerate(names)}  # the ablation's own order, full model first
    frame["_order"] = [rank.get(t, len(rank)) for t in frame["tokenizer"]]
    return frame.sort_values("_order", kind="stable").drop(columns="_order")


def refresh(run_dir: Path) -> bool:
    """Merge the folder's finished units into its result files first (a run killed before its
    own merge, or one still going on another core); True if it did."""
    run_dir = Path(run_dir)
    if not has_units(run_dir):
        return False
    load_config(run_dir)  # a bad config.json fails here with its name
    merge_units(run_dir)
    return True


def build_plots(run_dir: Path) -> list[Path]:
    """Draw every plot whose input the run folder holds into plots/; returns the files."""
    merged = refresh(run_dir)
    run_dir = check_run_dir(run_dir)
    load_config(run_dir)
    stats, sig = analyse(run_dir) if merged else _saved_or_computed(run_dir)
    return _draw(run_dir, stats, sig)


def _draw(run_dir: Path, stats: pd.DataFrame | None, sig: pd.DataFrame | None) -> list[Path]:
    config = load_config(run_dir)
    metrics = item_level(load_csv(run_dir, "metrics.csv"))
    usage = {}
    for tokenizer, seed, path in code_files(run_dir):
        if tokenizer not in usage:  # first seed of each tokenizer
            usage[tokenizer] = sorted_usage(load_index(path))
    out = run_dir / "plots"
    written = [
        plots.metric_bars(sig, out / "metrics.png"),
        plots.effect_matrix(sig, out / "effects.png"),
        plots.code_usage_lorenz(usage, out / "code_usage.png"),
        plots.entropy_bars(stats, out / "entropy.png"),
        plots.history_curves(load_csv(run_dir, "history.csv"), out / "history.png"),
        plots.ablation_bars(ablation_frame(config, metrics), out / "ablation.png"),
    ]
    return [p for p in written if p is not None]


# ---- report --------------------------------------------------------------------------------

def _label(metric: str, k: int) -> str:
    return plots._label(metric, k)


def metrics_section(sig: pd.DataFrame | None, seeds: pd.DataFrame, split: str = "test") -> list[str]:
    lines = [f"## Results ({split} split)", ""]
    if sig is not None and not sig.empty:
        data = sig[sig["split"] == split]
        ref = reference_names(data)
        lines += [f"Mean over test users (per-user values averaged over seeds), [95% bootstrap CI]; tests against "
                  f"**{ref}**; {marks_note(data)} (* p<0.05, ** p<0.01, *** p<0.001).", ""]
        data = data.assign(_mark_p=mark_p(data))
        rows = []
        for tok in plots.row_order(list(data["tokenizer"])):
            row = {"tokenizer": tok}
            for metric, k in TABLE_METRICS:
                hit = data[(data["tokenizer"] == tok) & (data["metric"] == metric) & (data["k"] == k)]
                if not hit.empty:
                    r = hit.iloc[0]
                    row[_label(metric, k)] = f"{_num(r['mean'])} [{_num(r['ci_low'])}, {_num(r['ci_high'])}]{stars(r['_mark_p'])}"
            rows.append(row)
        lines += [md_table(pd.DataFrame(rows).fillna("")), ""]
        effects = data[(data["tokenizer"] != data["reference"])
                       & pd.Series([(m, k) in EFFECT_METRICS for m, k in zip(data["metric"], data["k"])], index=data.index)]
        if not effects.empty:
            effects = effects.assign(_row=plots.row_rank(effects["tokenizer"])).sort_values(["metric", "k", "_row"], kind="stable")
            table = pd.DataFrame({
                "metric": [_label(m, k) for m, k in zip(effects["metric"], effects["k"])],
                "tokenizer": effects["tokenizer"], "n users": effects["n_users"],
                "mean": effects["mean"].map(_num), "reference": effects["reference"], "reference mean": effects["ref_mean"].map(_num),
                "diff": effects["diff"].map(_num), "rel. diff": effects["rel_diff"].map(lambda v: "" if pd.isna(v) else f"{100 * v:+.1f}%"),
                "d_z": effects["d_z"].map(lambda v: _num(v, 3)), "p (t)": effects["p_ttest"].map(_p),
                "p (perm.)": effects["p_perm"].map(_p), "p (Holm)": effects["p_holm"].map(_p),
            })
            if effects["reference"].nunique() == 1:  # one reference: its name heads its column
                table = table.drop(columns="reference").rename(columns={"reference mean": str(effects["reference"].iloc[0])})
            if "p_seed" in effects.columns and effects["p_seed"].notna().any():
                table["p (seeds)"] = effects["p_seed"].map(_p).to_numpy()
                table["p (seeds, Holm)"] = effects["p_seed_holm"].map(_p).to_numpy()
            lines += [f"Effect sizes against {ref} (difference, relative difference, Cohen's d_z) "
                      "next to the p-values: with many users tiny differences are significant. p (t), p (perm.) and "
                      "p (Holm): paired over users on seed-averaged values; p (seeds): the seed-aware test, which also "
                      "counts the variance between training runs.", "",
                      md_table(table), ""]
    seeds = seeds[seeds["split"] == split]
    if sig is None or (not seeds.empty and seeds["n_seeds"].max() > 1):
        title = "Mean ± std over seeds (from metrics.csv)." if seeds["n_seeds"].max() > 1 else "Metrics (from metrics.csv)."
        rows = []
        for tok in plots.row_order(list(seeds["tokenizer"])):
            row = {"tokenizer": tok, "seeds": int(seeds[seeds["tokenizer"] == tok]["n_seeds"].max())}
            for metric, k in TABLE_METRICS:
                hit = seeds[(seeds["tokenizer"] == tok) & (seeds["metric"] == metric) & (seeds["k"] == k)]
                if not hit.empty:
                    r = hit.iloc[0]
                    row[_label(metric, k)] = f"{_num(r['mean'])} ± {_num(r['std'])}" if r["n_seeds"] > 1 else _num(r["mean"])
            rows.append(row)
        lines += [title, "", md_table(pd.DataFrame(rows).fillna("")), ""]
    return lines


def code_section(stats: pd.DataFrame | None) -> list[str]:
    if stats is None or stats.empty:
        return []
    first = stats[stats["seed"] == stats.groupby("tokenizer")["seed"].transform("min")]
    first = first.assign(_row=plots.row_rank(first["tokenizer"])).sort_values(["_row", "level"], kind="stable")
    collisions = first.drop_duplicates("tokenizer")
    deep = sorted(set(first[first["level"] >= plots.MAX_LEVELS]["tokenizer"]))
    first = first[first["level"] < plots.MAX_LEVELS]  # titles have ~30 positions; all are in code_stats.csv
    levels = pd.DataFrame({
        "tokenizer": first["tokenizer"], "level": first["level"],
        "used / size": [f"{u} / {s}" for u, s in zip(first["used"], first["codebook_size"])],
        "entropy (nats)": first["entropy"].map(lambda v: _num(v, 3)),
        "entropy / log size": first["normalized_entropy"].map(lambda v: _num(v, 3)),
        "perplexity": first["perplexity"].map(lambda v: _num(v, 1)), "Gini": first["gini"].map(lambda v: _num(v, 3)),
        "items sharing the prefix": _optional(first, "items_sharing_prefix"),
    })
    whole = pd.DataFrame({
        "tokenizer": collisions["tokenizer"], "seed": collisions["seed"], "items": collisions["n_items"],
        "distinct codes": collisions["n_unique"], "colliding items": collisions["n_items"] - collisions["n_unique"],
        "collision rate": collisions["collision_rate"].map(lambda v: f"{100 * v:.2f}%"),
        "largest group": collisions["max_group"],
        "colliding as assigned": _optional(collisions, "collisions_assigned"),
        "colliding before made unique": collisions["collisions_before_unique"].map(
            lambda v: "" if pd.isna(v) else str(int(v))),
        "group sizes (size:groups)": collisions["collision_groups"].fillna("") if "collision_groups" in collisions else "",
    })
    cut = (f" Levels {plots.MAX_LEVELS} and deeper of {', '.join(deep)} are in code_stats.csv." if deep else "")
    return ["## Code statistics", "",
            "Per level (first seed; text and ID tokens: levels are positions, the codebook is the tokens seen)."
            + cut, "", md_table(levels), "", "Items sharing a whole code (as decoded). Colliding as assigned: items that "
            "shared a code as first assigned (argmin), before any re-assignment of the last level (LETTER's Sinkhorn "
            "rounds, the `sinkhorn` or `reassign` policy); before made unique: after it, before a numbering token "
            "(e.g. TIGER's 4th level):", "", md_table(whole), "", *sequence_section(collisions)]


def sequence_section(first: pd.DataFrame) -> list[str]:
    """Context-aware tokenizers (ActionPiece): how their vocabulary segments the training sequences."""
    rows = first[first["tokens_per_item"].notna()] if "tokens_per_item" in first else first.iloc[:0]
    if rows.empty:
        return []
    table = pd.DataFrame({"tokenizer": rows["tokenizer"], "seed": rows["seed"],
                          "vocabulary used": rows["vocab_usage"].map(lambda v: f"{100 * v:.1f}%"),
                          "tokens per item": rows["tokens_per_item"].map(lambda v: _num(v, 2)),
                          "merged tokens spanning items": rows["cross_item_share"].map(lambda v: f"{100 * v:.1f}%")})
    return ["Context-aware tokenizers: their segmentation of the training sequences (one random segmentation "
            "per sequence, as in training):", "", md_table(table), ""]


def _optional(frame: pd.DataFrame, column: str) -> Any:
    """A count column that older runs' code_stats.csv lack (blank there)."""
    if column not in frame:
        return ""
    return frame[column].map(lambda v: "" if pd.isna(v) else str(int(v)))


def reference_label(config: dict[str, Any], sig: pd.DataFrame | None) -> str:
    if sig is None or sig.empty:
        return str(config.get("reference") or "default")
    used = reference_names(sig)
    left_to_default = not config.get("reference") and used == default_reference(list(dict.fromkeys(sig["tokenizer"])))
    return f"{used} (default)" if left_to_default else used


def config_section(config: dict[str, Any], sig: pd.DataFrame | None = None) -> list[str]:
    """The reference row names the one the tests used (significance.csv), also when the run
    left it to the default or `bench report --reference` chose another."""
    data = config.get("data") or {}
    lines = ["## Data", ""]
    rows = [("data set", config.get("dataset", "")), ("users", data.get("n_users", "")),
            ("items", data.get("n_items", "")), ("interactions", data.get("n_interactions", "")),
            ("fingerprint", f"`{data.get('fingerprint', '')}`")]
    lines += [md_table(pd.DataFrame(rows, columns=["", "value"])), "", "## Configuration", ""]
    rows = [("preset", config.get("preset", "")), ("tokenizers", ", ".join(map(str, config.get("tokenizers", [])))),
            ("seeds", ", ".join(map(str, config.get("seeds", [])))), ("backbone", config.get("backbone", "")),
            ("reference", reference_label(config, sig)), ("git commit", f"`{config.get('git_commit', '')}`")]
    lines += [md_table(pd.DataFrame(rows, columns=["", "value"])), ""]
    recipe = config.get("recipe") or {}
    if recipe:
        lines += ["Recipe:", "", "```json", json.dumps(recipe, indent=2, sort_keys=True, default=str), "```", ""]
    versions = config.get("versions") or {}
    if versions:
        lines += ["Versions (the run that last wrote config.json): " + versions_text(versions), ""]
    return lines


def render(run_dir: Path, config: dict[str, Any], stats: pd.DataFrame | None, sig: pd.DataFrame | None,
           metrics: pd.DataFrame, timings: pd.DataFrame | None, plot_files: list[Path]) -> str:
    lines = [f"# Run {config.get('run', Path(run_dir).name)}", ""]
    lines += config_section(config, sig) + software_section(timings)
    lines += protocol_section(config, load_csv(run_dir, "history.csv"), md_table, run_dir)
    lines += metrics_section(sig, seed_summary(item_level(metrics)))
    lines += ablation_section(config, sig, item_level(metrics), stats, md_table, _label)
    lines += collision_scoring_section(metrics, md_table, plots.row_order)
    lines += code_section(stats)
    if plot_files:
        lines += ["## Plots", ""]
        for p in plot_files:
            lines += [f"![{p.stem}](plots/{p.name})", ""]
    lines += timing_section(timings, load_csv(run_dir, "history.csv"))
    return "\n".join(lines).rstrip() + "\n"


def build_report(run_dir: Path, options: SignificanceOptions | None = None) -> Path:
    """Recompute code_stats.csv and significance.csv, redraw plots/, write report.md."""
    refresh(run_dir)
    run_dir = check_run_dir(run_dir)
    config, metrics = load_config(run_dir), load_csv(run_dir, "metrics.csv")  # bad files fail before any work
    timings = load_csv(run_dir, "timings.csv")
    stats, sig = analyse(run_dir, options)
    plot_files = _draw(run_dir, stats, sig)
    text = render(run_dir, config, stats, sig, metrics, timings, plot_files)
    path = run_dir / "report.md"
    atomic_write_text(path, text)
    return path
