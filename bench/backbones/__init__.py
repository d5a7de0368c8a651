"""Backbones by spec: `t5` (encoder-decoder from scratch), `causal:SPEC` (decoder-only LM:
tiny-llama, tiny-qwen2, tiny-gpt2, a Hugging Face model name or a local folder)."""

from __future__ import annotations

from bench.backbones.base import Backbone
from bench.backbones.decoding import Ranked, beam_search, exact_scores
from bench.backbones.t5 import T5Backbone
from bench.backbones.trie import CodeTrie
from bench.config import RunConfig
from bench.errors import BenchError
from bench.tokenizers.base import Tokenizer

BACKBONES = ("t5", "causal:SPEC")


def make_backbone(spec: str, tokenizer: Tokenizer, config: RunConfig) -> Backbone:
    name, _, arg = spec.partition(":")
    if name == "t5":
        if arg:
            raise BenchError(f"backbone t5 takes no argument (got {spec!r})")
        return T5Backbone(tokenizer, config.t5)
    if name == "causal":
        if not arg:
            raise BenchError("backbone causal needs a model: causal:tiny-llama, causal:NAME or causal:PATH")
        from bench.backbones.causal import CausalBackbone

        return CausalBackbone(tokenizer, arg, config.causal)
    raise BenchError(f"unknown backbone {name!r} (known: {', '.join(BACKBONES)})")


__all__ = ["BACKBONES", "Backbone", "CodeTrie", "Ranked", "T5Backbone", "beam_search", "exact_scores", "make_backbone"]
