"""LETTER ablation: one row per loss switched off, same data, split, seeds and backbone."""

from __future__ import annotations

from typing import Any

from bench.config import RunConfig

LETTER_TAU = 0.7  # the paper's best ranking-guided temperature (Instruments)

# label -> (what it changes, tokenizer option overrides, recipe overrides)
LETTER_ABLATION: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "letter": ("full LETTER (CF + diversity + ranking-guided loss)", {}, {"tau": LETTER_TAU}),
    "letter-no-cf": ("without the collaborative loss (alpha 0)", {"alpha": 0.0}, {"tau": LETTER_TAU}),
    "letter-no-div": ("without the diversity loss (beta 0)", {"beta": 0.0}, {"tau": LETTER_TAU}),
    "letter-semantic": ("semantic only (alpha 0, beta 0)", {"alpha": 0.0, "beta": 0.0}, {"tau": LETTER_TAU}),
    "letter-tau1": ("without the ranking-guided loss (tau 1)", {}, {"tau": 1.0}),
    "letter-no-recon": ("without the reconstruction loss (the paper always keeps it)", {"recon_weight": 0.0}, {"tau": LETTER_TAU}),
}


def letter_ablation(config: RunConfig) -> RunConfig:
    """The run's config with one variant per ablation row; significance against full LETTER."""
    base = config.tokenizer_options.get("letter", {})
    config.tokenizers = ["letter"]
    config.variants = [{"label": label, "tokenizer": "letter", "options": {**base, **opts}, "recipe": recipe}
                       for label, (_, opts, recipe) in LETTER_ABLATION.items()]
    config.ablation = {label: what for label, (what, _, _) in LETTER_ABLATION.items()}
    config.reference = "letter"
    return config
