"""A run's rows: each tokenizer with its options and recipe overrides under a label (or the
ablation's variants), with the settings `bench tune` chose applied."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.config import RunConfig
from bench.errors import BenchError
from bench.tokenizers import make_tokenizer


@dataclass
class Variant:
    """One results row: a tokenizer with its options and recipe overrides, under a label."""

    label: str
    tokenizer: str
    options: dict[str, Any]
    recipe: dict[str, Any]
    reusable: bool = True  # False: always fitted and trained here, never another run's model (bench/unit_reuse.py)


def variants(config: RunConfig, specs: list[str]) -> list[Variant]:
    """One per tokenizer (or the configured ablation variants); settings chosen by `bench
    tune` (config.tuned) become each tokenizer's recipe overrides."""
    if config.variants:
        out = [Variant(v["label"], v["tokenizer"], dict(v.get("options", {})), dict(v.get("recipe", {})),
                       v.get("reusable", True)) for v in config.variants if v["tokenizer"] in specs]
    else:
        out = []
        for spec in specs:
            options = config.options_for(spec)
            out.append(Variant(make_tokenizer(spec, options).label, spec, options, {}))
    if not config.tuned:
        return out
    chosen = config.tuned["chosen"]
    for v in out:
        name = make_tokenizer(v.tokenizer, v.options).label  # what bench tune named the tokenizer's study
        if name not in chosen:
            raise BenchError(f"--tuned {config.tuned['dir']}: no tuned settings for {name} (run bench tune on it first)")
        for key, value in chosen[name]["settings"].items():
            v.recipe.setdefault(key.partition(".")[2], value)  # an ablation's own recipe change wins
    return out


__all__ = ["Variant", "variants"]
