"""The report's protocol section: how every setting was chosen, why each unit stopped, which
split and side data were used, and which test each significance mark comes from. A reader
checks from it that nothing was chosen on test and that every unit converged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import DataError
from bench.evaluation.significance import stars
from bench.superseding import UNIT_COLUMNS


def mark_p(sig: pd.DataFrame) -> pd.Series:
    """The p-value behind each significance mark: the seed-aware test (Holm) where the row and
    the reference both have two or more seeds, else the per-user paired t-test (Holm)."""
    if "p_seed_holm" not in sig.columns:
        return sig["p_holm"]
    return sig["p_seed_holm"].where(sig["p_seed_holm"].notna(), sig["p_holm"])


def marks(sig: pd.DataFrame) -> pd.Series:
    return mark_p(sig).map(stars)


def reference_names(sig: pd.DataFrame) -> str:
    """The row(s) the tests compare with: one name, or "each row's own reference (a, b)" when
    rows have their own (a collision table's policies against their tokenizer's suffix row)."""
    refs = [str(r) for r in dict.fromkeys(sig["reference"])]
    return refs[0] if len(refs) == 1 else f"each row's own reference ({', '.join(refs)})"


def marks_note(sig: pd.DataFrame) -> str:
    """One sentence naming the test behind the marks of this run."""
    seed_aware = "p_seed_holm" in sig.columns and sig["p_seed_holm"].notna().any()
    if seed_aware:
        return ("marks: the seed-aware test (users and training runs as random effects, so the variance "
                "between seeds counts), Holm-corrected over all comparisons; rows with one seed use the "
                "paired t-test over users (Holm) instead")
    return "marks: paired t-test over users, Holm-corrected over all comparisons (one seed: no seed-aware test)"


def search_codes(run_dir: Path | None, tuned: dict[str, Any], label: str) -> str:
    """Whether the row's unit of the tuning seed trained on the codes its search's trials all
    trained on (bench/codes_store.py): compared byte for byte; "" where either is not at hand
    (a search made before it kept its codes, an ablation row of other tokenizer settings)."""
    seed = (tuned.get("search") or {}).get("seed")
    if run_dir is None or not tuned.get("dir") or seed is None:
        return ""
    name = f"{label}-seed{seed}.index.json"
    here, search = Path(run_dir) / "codes" / name, Path(tuned["dir"]) / "codes" / name
    if not (here.is_file() and search.is_file()):
        return ""
    return "the search's" if here.read_bytes() == search.read_bytes() else "**OTHER than the search's**"


def settings_rows(config: dict[str, Any], run_dir: Path | None = None) -> list[dict[str, str]]:
    """Per row: its learning rate, weight decay and any other tuned setting, how each was
    chosen (by `bench tune` on validation, or a priori: the preset's value), and whether its
    tuning seed trained on the codes of the search that chose them."""
    recipe = config.get("recipe") or {}
    tuned = config.get("tuned") or {}
    chosen = tuned.get("chosen") or {}
    search = tuned.get("search") or {}
    rows = []
    for label in config.get("labels") or config.get("tokenizers") or []:
        name = str(label)
        # an ablation variant (config "variants") trains with its tokenizer's tuned settings
        tokenizer = {v.get("label"): v.get("tokenizer") for v in config.get("variants") or []}.get(name, name)
        hit = chosen.get(name) or chosen.get(str(tokenizer).replace(":", "-")) or {}
        values = {k.partition(".")[2]: v for k, v in (hit.get("settings") or {}).items()}
        names = ["lr", "weight_decay", *[k for k in values if k not in ("lr", "weight_decay")]]
        settings = ", ".join(f"{k} {values.get(k, recipe.get(k, ''))}" for k in names)
        a_priori = [k for k in names if k not in values]
        how = []
        if values:
            how.append(f"{', '.join(values)}: bench tune on validation ({search.get('sampler', 'grid')} over "
                       f"{json.dumps(search.get('space', {}))}, {hit.get('trials')} trials, seed {search.get('seed')}; "
                       f"best validation NDCG@10 {hit.get('valid_ndcg@10', float('nan')):.4f})")
        if a_priori:
            how.append(f"{', '.join(a_priori)}: a priori (the preset's value)")
        row = {"row": name, "settings": settings, "how chosen": "; ".join(how)}
        if tuned:
            row[f"codes of seed {search.get('seed')}"] = search_codes(run_dir, tuned, name)
        rows.append(row)
    return rows


def stopping_table(history: pd.DataFrame | None, recipe: dict[str, Any]) -> pd.DataFrame | None:
    """Per unit: epochs trained, best epoch, and why it stopped. Units of runs made before
    `stopped_by` was recorded get it inferred from the training rule: patience ran out if
    training ended before the cap or `patience` epochs after the best one."""
    if history is None or history.empty or "epoch" not in history.columns:
        return None
    rows = []
    for (tok, seed), unit in history.groupby(["tokenizer", "seed"], sort=False):
        epochs = int(unit["epoch"].max())
        best = unit["best_epoch"].iloc[-1] if "best_epoch" in unit.columns else np.nan
        stopped = unit["stopped_by"].iloc[-1] if "stopped_by" in unit.columns else np.nan
        if pd.isna(stopped) and not pd.isna(best) and recipe.get("epochs") and recipe.get("patience"):
            ran_out = epochs < recipe["epochs"] or epochs - int(best) >= recipe["patience"] * recipe.get("eval_every", 1)
            stopped = ("patience" if ran_out else "cap") + " (inferred)"
        shown = "not recorded" if pd.isna(stopped) else str(stopped)
        rows.append({"row": tok, "seed": int(seed), "epochs": epochs, "best epoch": "" if pd.isna(best) else int(best),
                     "stopped by": shown.replace("cap", "CAP: not converged", 1) if shown.startswith("cap") else shown})
    return pd.DataFrame(rows)


def protocol_section(config: dict[str, Any], history: pd.DataFrame | None, md_table: Any,
                     run_dir: Path | None = None) -> list[str]:
    if "data_options" not in config:  # made before the protocol was recorded
        lines = ["## Protocol", "", "This run predates the protocol record: how its settings were chosen was not "
                 "recorded (they may have been chosen on test), nor was the split or CF source.", ""]
        stops = stopping_table(history, config.get("recipe") or {})
        if stops is not None:
            lines += ["Why each unit stopped (inferred from its history):", "", md_table(stops), ""]
        return lines
    data = config.get("data_options") or {}
    split = data.get("split", "leave-one-out")
    cf = data.get("cf_embeddings", "train")
    lines = ["## Protocol", "",
             f"- Split: **{split}**" + (" (global temporal: training before one cut-off, validation and test after it)"
                                       if split == "temporal" else " (last item test, second to last validation)") + ".",
             "- CF embeddings (LETTER's collaborative signal): " + (
                 "**EXTERNAL**: shipped with the data set; their training split is unknown, so validation or test "
                 "interactions may have reached LETTER's CF loss." if cf == "shipped"
                 else "SASRec trained on this run's training split."),
             "- Nothing was chosen on the test split: settings are a priori or chosen by `bench tune` on validation "
             "(below); early stopping uses validation NDCG@10.", ""]
    settings = settings_rows(config, run_dir)
    if settings:
        lines += ["How each row's learning rate and weight decay were chosen:", "", md_table(pd.DataFrame(settings)), ""]
    stops = stopping_table(history, config.get("recipe") or {})
    if stops is not None:
        capped = stops[stops["stopped by"].astype(str).str.startswith("CAP")]
        recipe = config.get("recipe") or {}
        floor = f", not before epoch {recipe['min_epochs']}" if recipe.get("min_epochs") else ""
        schedule = (f"; the rate's schedule spans {recipe['schedule_epochs']} epochs, a cap raised past it changes "
                    "no unit that patience stopped" if recipe.get("schedule_epochs") else "")
        lines += [f"Why each unit stopped (patience {recipe.get('patience', '')} evaluations without a better "
                  f"validation NDCG@10{floor}, cap {recipe.get('epochs', '')} epochs{schedule}):", "", md_table(stops), ""]
        if not capped.empty:
            lines += [f"**{len(capped)} unit(s) stopped at the epoch cap while validation was still improving: "
                      "they may not have converged.**", ""]
    set_aside = superseded_table(run_dir)
    if set_aside is not None:
        lines += [f"Set aside (`bench supersede`, `superseded.csv`): {len(set_aside)} unit(s) made under an "
                  "earlier rule, default or fit (a rerun trains them again under today's); they are in no other "
                  "table or test of this report:", "", md_table(set_aside), ""]
    return lines


def superseded_table(run_dir: Path | None) -> pd.DataFrame | None:
    """The units a run folder set aside (`bench supersede`), with the test figures they had and why."""
    path = None if run_dir is None else Path(run_dir) / "superseded.csv"
    if path is None or not path.is_file():
        return None
    try:
        rows = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(path, f"unreadable ({type(e).__name__})") from None
    missing = [c for c in UNIT_COLUMNS if c not in rows.columns]
    if missing:
        raise DataError(path, f"not a list of superseded units (no {', '.join(missing)} column)")
    if rows.empty:
        return None

    def shown(column: str, form: Any) -> list[str]:
        return ["" if pd.isna(v) else form(v) for v in rows[column]]

    whole = lambda v: str(int(v))  # noqa: E731
    epochs = [f"{e} ({b})" if b else e for e, b in zip(shown("epochs", whole), shown("best_epoch", whole))]
    return pd.DataFrame({"row": rows["tokenizer"], "seed": rows["seed"],
                         "test R@10": shown("test_recall@10", lambda v: f"{v:.4f}"),
                         "test N@10": shown("test_ndcg@10", lambda v: f"{v:.4f}"),
                         "epochs (best)": epochs, "why": rows["why"]})
