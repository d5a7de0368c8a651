"""Fitting a unit's codes, and fitting them before any unit trains for rows that must share
one quantiser (a collision table's policies, `reusable` False: they differ only after the
quantiser is trained, and each row fits it again). A unit otherwise fits its codes when it
starts; a run longer than a session goes on wherever the next session runs, and a fit repeats
bit for bit only on one machine, so the table would compare policies over two quantisers.
Fitting every such row first keeps them on the machine that began the run: their codes are
saved in the folder, and a unit that finds its codes there loads them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from bench.embeddings.lazy import Embeddings
from bench.stage_clock import Elapsed, clock, since
from bench.tokenizers import Tokenizer, make_tokenizer

if TYPE_CHECKING:
    from bench.runner import Run
    from bench.variants import Variant


def fit_codes(embeddings: Embeddings, tokenizer: Tokenizer, seed: int, path: Path, item_ids: list[str]) -> dict[str, Elapsed]:
    """Fit `tokenizer` at `seed` and save its codes to `path`; the stages' times (embeddings
    computed for it, then the tokenizer itself), as a unit's timings.csv records them."""
    start = clock()
    before = dict(embeddings.times)
    embeddings.fit(tokenizer, seed)
    tokenizer.save(path, item_ids)
    timings = {key.split("_seed")[0]: value for key, value in embeddings.times.items() if key not in before}
    timings["tokenizer"] = since(start) - sum(timings.values(), Elapsed())
    return timings


def prefit_shared_quantiser_rows(run: Run, seed: int) -> dict[str, dict[str, Elapsed]]:
    """The codes of every unfinished not-reusable row of `seed` that has none yet, fitted now
    (each under its unit's lock). Returns their fit timings by label, for their units to record."""
    fitted: dict[str, dict[str, Elapsed]] = {}
    if run.main:
        for variant in [v for v in run.variants if not v.reusable]:
            run.locked(run.unit_dir(variant.label, seed), lambda: _prefit_row(run, variant, seed, fitted))
    return fitted


def _prefit_row(run: Run, variant: Variant, seed: int, fitted: dict[str, dict[str, Elapsed]]) -> None:
    path = run.out / "codes" / f"{variant.label}-seed{seed}.index.json"
    if (run.unit_dir(variant.label, seed) / "done").exists() or path.with_suffix(".state.json").exists():
        return
    if run.fitted_codes(variant, seed) is None:  # else the row loads that row's codes
        tokenizer = make_tokenizer(variant.tokenizer, variant.options)
        fitted[variant.label] = fit_codes(run.embeddings, tokenizer, seed, path, run.data.item_ids)
        run.log(f"{variant.label} seed {seed}: codes fitted before any row trains (rows share a quantiser)")


__all__ = ["fit_codes", "prefit_shared_quantiser_rows"]
