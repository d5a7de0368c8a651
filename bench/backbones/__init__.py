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


def check_backbone_spec(spec: str) -> tuple[str, str]:
    """(name, argument) of a valid spec; one-line error otherwise (checked before a run starts)."""
    name, _, arg = spec.partition(":")
    if name == "t5" and arg:
        raise BenchError(f"--backbone {spec!r}: t5 takes no argument")
    if name == "causal" and not arg:
        raise BenchError("--backbone causal needs a model: causal:tiny-llama, causal:NAME or causal:PATH")
    if name not in ("t5", "causal"):
        raise BenchError(f"--backbone {spec!r}: unknown or malformed (known: {', '.join(BACKBONES)})")
    return name, arg


def make_backbone(spec: str, tokenizer: Tokenizer, config: RunConfig) -> Backbone:
    name, arg = check_backbone_spec(spec)
    backbone: Backbone
    if name == "t5":
        backbone = T5Backbone(tokenizer, config.t5)
    else:
        from bench.backbones.causal import CausalBackbone

        backbone = CausalBackbone(tokenizer, arg, config.causal)
    backbone.max_input_tokens = config.recipe.max_input_tokens
    return backbone


__all__ = ["BACKBONES", "Backbone", "check_backbone_spec", "CodeTrie", "Ranked", "T5Backbone", "beam_search", "exact_scores", "make_backbone"]
