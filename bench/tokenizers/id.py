"""One new token per item: the plain baseline of every generative recommender paper."""

from __future__ import annotations

from bench.tokenizers.base import FitContext, Tokenizer


class IDTokenizer(Tokenizer):
    name = "id"

    def fit(self, ctx: FitContext) -> None:
        self.vocab = [f"<item_{i}>" for i in range(ctx.data.n_items)]
        self.codes = [(i,) for i in range(ctx.data.n_items)]
