"""What a run checks before its results folder exists: which requested tokenizers can run on
the data set (those that need item text), and the options and inputs that would otherwise
fail only mid-run."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from bench.backbones import check_backbone_spec
from bench.config import RunConfig
from bench.datasets import Dataset
from bench.errors import BenchError
from bench.options import make_options
from bench.tokenizers import TOKENIZERS
from bench.variants import Variant

TITLE_TOKENIZERS = ("text",)  # read item titles themselves, not text embeddings


def runnable_tokenizers(specs: list[str], data: Dataset, config: RunConfig, log: Callable[[str], None]) -> list[str]:
    """Tokenizers that need item text cannot run on a data set without it: an explicit
    request is an error, one that came from `all` is skipped with a message."""
    has_text = data.has_text or data.text_embeddings is not None
    out = []
    for spec in specs:
        cls = TOKENIZERS[spec.partition(":")[0]]
        msg = None
        if cls.needs_text and not has_text:
            msg = f"tokenizer {cls.name} needs item text, and {data.source} has none (no *.item.json or text embeddings)"
        elif cls.needs_text:
            msg = missing_text(cls.name, data, config)
        if msg:
            if spec in config.explicit_tokenizers:
                raise BenchError(msg)
            log(f"skipped: {msg}")
            continue
        out.append(spec)
    return out


def missing_text(name: str, data: Dataset, config: RunConfig) -> str | None:
    """The first item without text, when `name` will need it: the text tokenizer reads
    titles; the others read text embeddings, which are encoded from title and
    description unless the data set ships them (and no other encoder is asked for)."""
    if name not in TITLE_TOKENIZERS and data.text_embeddings is not None and config.embedding_model is None:
        return None
    for item, fields in zip(data.item_ids, data.item_text or []):
        if not any(str(fields.get(f) or "").strip() for f in ("title", "description")):
            return (f"tokenizer {name} needs every item's text, and item {item} of {data.source} "
                    "has neither title nor description")
    return None


def check_inputs(config: RunConfig, variants: list[Variant], data: Dataset) -> None:
    """Input that would otherwise fail only after the results folder exists."""
    check_backbone_spec(config.backbone)
    for name, options in config.tokenizer_options.items():  # --set NAME.x=... of tokenizers not run too
        if name in TOKENIZERS:
            make_options(TOKENIZERS[name].Options, options, name)
    for variant in variants:
        name, _, arg = variant.tokenizer.partition(":")
        if name == "precomputed" and arg:
            from bench.tokenizers.precomputed import read_index

            read_index(Path(arg), data.item_ids)
