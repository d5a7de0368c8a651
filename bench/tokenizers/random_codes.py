"""`random`: the semantics-free control. Every item gets a code of `tiger`'s shape (the same
levels and codebook size per preset) drawn uniformly at random with numpy's
`default_rng(ctx.seed)`, independent of any item content, so what a semantic tokenizer gains
over this one is what its semantics buy, at the same code length and vocabulary.

Collisions: `suffix` (default; every item gets a numbering token, like tiger's 4th level) or
`keep`. `sinkhorn` and `reassign` re-assign codes by distances to a codebook, which random
codes do not have, so they are refused."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.options import check
from bench.tokenizers.base import FitContext, Tokenizer
from bench.tokenizers.collisions import resolve_codes
from bench.tokenizers.rqvae import RQVAE_PRESETS
from bench.tokenizers.tiger import TigerOptions

RANDOM_POLICIES = ("suffix", "keep")


@dataclass
class RandomOptions:
    levels: int = TigerOptions.levels  # tiger's shape: 3 levels
    codebook_size: int = TigerOptions.codebook_size  # of 256 codes
    collisions: str = "suffix"  # or `keep`

    def __post_init__(self) -> None:
        check(self.levels >= 1, "levels must be >= 1")
        check(self.levels <= 25, "levels must be <= 25 (one token letter per level)")
        check(self.codebook_size >= 2, "codebook_size must be >= 2")
        check(self.collisions in RANDOM_POLICIES,
              f"collisions must be one of {RANDOM_POLICIES}, got {self.collisions!r}: sinkhorn and reassign "
              f"re-assign codes by their distances to a codebook, and random codes have none")


# tiger's code shape per preset (RQVAE_PRESETS: 32 codes at `quick`)
SHAPE_OPTIONS = ("levels", "codebook_size")
PRESET_OPTIONS: dict[str, dict[str, object]] = {
    preset: {k: v for k, v in options.items() if k in SHAPE_OPTIONS} for preset, options in RQVAE_PRESETS.items()}


class RandomTokenizer(Tokenizer):
    name = "random"
    Options = RandomOptions
    needs_text = False  # reads nothing but the number of items

    def fit(self, ctx: FitContext) -> None:
        o: RandomOptions = self.options
        rng = np.random.default_rng(ctx.seed)
        levels = rng.integers(o.codebook_size, size=(ctx.data.n_items, o.levels))
        sizes = [o.codebook_size] * o.levels
        self.vocab, self.codes, c = resolve_codes(levels, None, o.collisions, sizes, every_item=True)
        self.n_collisions = c.after
        ctx.log(f"random: {c.after} of {ctx.data.n_items} items share a random code (policy {o.collisions})")
