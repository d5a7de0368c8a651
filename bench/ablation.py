"""Ablations, one row per variant with the same data, split, seeds and backbone: LETTER with
each loss switched off, and tokenizers under every collision policy."""

from __future__ import annotations

from typing import Any

from bench.config import RunConfig
from bench.errors import BenchError
from bench.options import make_options

LETTER_TAU = 0.7  # the paper's best ranking-guided temperature (Instruments)

# label -> (what it changes, tokenizer option overrides, recipe overrides)
LETTER_ABLATION: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "letter": ("full LETTER (CF + diversity + ranking-guided loss)", {}, {"tau": LETTER_TAU}),
    "letter-no-cf": ("without the collaborative loss (alpha 0)", {"alpha": 0.0}, {"tau": LETTER_TAU}),
    "letter-no-div": ("without the diversity loss (beta 0)", {"beta": 0.0}, {"tau": LETTER_TAU}),
    "letter-semantic": ("semantic only (alpha 0, beta 0; LETTER's initialisation and Sinkhorn export kept)",
                        {"alpha": 0.0, "beta": 0.0}, {"tau": LETTER_TAU}),
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


def collision_ablation(config: RunConfig) -> RunConfig:
    """One variant per (tokenizer, collision policy), labelled `tiger-keep` etc.; each keeps the
    tokenizer's tuned settings (looked up by tokenizer); each row is tested against its own
    tokenizer's `suffix` row (`references`; rows outside the table, popularity and SASRec, against
    the first tokenizer's). Kept collisions are also scored at code level. Every row
    is fitted here: the policies differ only after the quantiser is trained, and a fit repeats
    bit for bit in one place, so all of a tokenizer's rows share one quantiser; a `suffix`
    row taken from a tuning trial or another run would bring another."""
    from bench.tokenizers import TOKENIZERS
    from bench.tokenizers.collisions import COLLISION_POLICIES

    rows = []
    for spec in config.tokenizers:
        name = spec.partition(":")[0]
        base = config.tokenizer_options.get(name, {})
        for policy in COLLISION_POLICIES:  # the tokenizer's own option check says which it lacks
            try:
                make_options(TOKENIZERS[name].Options, {**base, "collisions": policy}, name)
            except BenchError as e:
                raise BenchError(f"bench ablate collisions: {name} cannot take every policy ({e})") from None
        rows += [(f"{name}-{policy}", spec, {**base, "collisions": policy}, f"{name}, collisions={policy}")
                 for policy in COLLISION_POLICIES]
    config.variants = [{"label": label, "tokenizer": spec, "options": opts, "recipe": {}, "reusable": False}
                       for label, spec, opts, _ in rows]
    config.ablation = {label: what for label, _, _, what in rows}
    config.reference = rows[0][0]
    config.references = {label: f"{spec.partition(':')[0]}-{COLLISION_POLICIES[0]}" for label, spec, _, _ in rows}
    return config
