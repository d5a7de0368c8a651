"""A run's text and collaborative embeddings, computed on first use and then kept, so
tokenizers that need none cost nothing and the rest share one computation."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from accelerate.utils import set_seed

from bench.config import RunConfig, sasrec_options
from bench.datasets import Dataset, Split
from bench.errors import BenchError
from bench.stage_clock import Elapsed, clock, since
from bench.tokenizers import FitContext, Tokenizer


class Embeddings:
    """Text and collaborative embeddings, computed on first use and then kept."""

    def __init__(self, data: Dataset, split: Split, config: RunConfig, device: torch.device, log: Callable[[str], None]):
        self.data, self.split, self.config, self.device, self.log = data, split, config, device, log
        if config.data_options.cf_embeddings == "shipped" and data.cf_embeddings is None:
            raise BenchError(f"data.cf_embeddings=shipped: {data.source} ships no CF embeddings")
        self._text: np.ndarray | None = None
        self._cf: dict[int, np.ndarray] = {}
        self.times: dict[str, Elapsed] = {}  # stage -> wall and CPU time of what was computed

    def text(self) -> np.ndarray:
        if self._text is None:
            from bench.embeddings import text_embeddings

            start = clock()
            self._text = text_embeddings(self.data, model=self.config.embedding_model, device=str(self.device))
            self.times["text_embeddings"] = since(start)
        return self._text

    def materialize(self, inputs: set[str], seed: int) -> None:
        """Compute (or load from the disk cache) what a tokenizer will ask for, before its fit:
        loading an encoder or a SASRec model draws on the global random state, so the fit's
        random stream would otherwise depend on whether these were cached (a unit run as a
        job loads them; in one process the first tokenizer computes them)."""
        if "text_embeddings" in inputs:
            self.text()
        if "cf_embeddings" in inputs:
            self.cf(seed)

    def context(self, seed: int) -> FitContext:
        """What a tokenizer fits on, with these embeddings behind its lazy accessors."""
        return FitContext(self.data, self.split, seed, str(self.device), text_embeddings=self.text,
                          cf_embeddings=lambda: self.cf(seed), log=self.log)

    def fit(self, tokenizer: Tokenizer, seed: int) -> Tokenizer:
        """`tokenizer` fitted on these embeddings at `seed`, as every unit, `bench codes fit` and
        `bench perf` fit it; its random stream does not depend on whether its inputs were cached."""
        self.materialize(tokenizer.inputs(), seed)
        set_seed(seed)
        tokenizer.fit(self.context(seed))
        return tokenizer

    def cf(self, seed: int) -> np.ndarray:
        if seed not in self._cf:
            from bench.embeddings import cf_embeddings

            start = clock()
            shipped = self.config.data_options.cf_embeddings == "shipped"
            if shipped:
                self.log(f"CF embeddings: EXTERNAL, shipped with {self.data.source} (their training split is unknown: "
                         "validation or test interactions may have been seen)")
            self._cf[seed] = cf_embeddings(self.data, self.split, sasrec_options(self.config.sasrec), seed=seed,
                                           shipped=shipped, device=str(self.device), log=self.log)
            self.times[f"cf_embeddings_seed{seed}"] = since(start)
        return self._cf[seed]
