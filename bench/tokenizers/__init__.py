"""Tokenizers by name. A new tokenizer is one module here plus one line in TOKENIZERS."""

from __future__ import annotations

from typing import Any

from bench.errors import BenchError
from bench.tokenizers.base import FitContext, Tokenizer
from bench.tokenizers.actionpiece import ActionPieceTokenizer
from bench.tokenizers.cid import CIDTokenizer
from bench.tokenizers.id import IDTokenizer
from bench.tokenizers.letter import LetterTokenizer
from bench.tokenizers.opq import OPQTokenizer
from bench.tokenizers.precomputed import PrecomputedTokenizer
from bench.tokenizers.random_codes import RandomTokenizer
from bench.tokenizers.rqkmeans import RQKMeansTokenizer
from bench.tokenizers.text import TextTokenizer
from bench.tokenizers.tiger import TigerTokenizer

TOKENIZERS: dict[str, type[Tokenizer]] = {
    "id": IDTokenizer,
    "text": TextTokenizer,
    "precomputed": PrecomputedTokenizer,
    "tiger": TigerTokenizer,
    "letter": LetterTokenizer,
    "rqkmeans": RQKMeansTokenizer,
    "opq": OPQTokenizer,
    "cid": CIDTokenizer,
    "random": RandomTokenizer,
    "actionpiece": ActionPieceTokenizer,
}


def parse_tokenizer_list(value: str) -> list[str]:
    """`all` = every registered tokenizer that takes no argument; else a comma list of specs."""
    specs = [s.strip() for s in value.split(",") if s.strip()]
    if not specs:
        raise BenchError("--tokenizers: empty list")
    out: list[str] = []
    for spec in specs:
        if spec == "all":
            out += [n for n, cls in TOKENIZERS.items() if not cls.takes_argument]
        else:
            name, _, arg = spec.partition(":")
            if name not in TOKENIZERS:
                raise BenchError(f"unknown tokenizer {name!r} (known: {', '.join(TOKENIZERS)})")
            if TOKENIZERS[name].takes_argument and not arg:
                raise BenchError(f"tokenizer {name} needs an argument: {name}:PATH")
            if arg and not TOKENIZERS[name].takes_argument:
                raise BenchError(f"tokenizer {name} takes no argument (got {spec!r})")
            out.append(spec)
    return list(dict.fromkeys(out))


def make_tokenizer(spec: str, options: dict[str, Any] | None = None) -> Tokenizer:
    name, _, arg = spec.partition(":")
    if name not in TOKENIZERS:
        raise BenchError(f"unknown tokenizer {name!r} (known: {', '.join(TOKENIZERS)})")
    return TOKENIZERS[name](arg or None, **(options or {}))


__all__ = ["TOKENIZERS", "FitContext", "Tokenizer", "make_tokenizer", "parse_tokenizer_list"]
