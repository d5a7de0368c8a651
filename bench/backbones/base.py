"""The backbone interface: a sequence model that owns its loss and one decoding step.
Beam search (decoding.py) is shared, so every backbone is decoded the same way."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from bench.backbones.trie import CodeTrie
from bench.tokenizers.base import Tokenizer

Rngs = Optional[Sequence[Optional[np.random.Generator]]]  # one per history; None: deterministic encodings
PAD, EOS = 0, 1
N_SPECIAL = 2  # model ids: 0 <pad> (also T5's decoder start), 1 </s>; item tokens follow
# Attention kernels a backbone's model may use: all but cuDNN's. On an H200 (torch 2.11, bf16
# autocast) cuDNN's fused attention, PyTorch's first choice there, made a causal LM's loss NaN
# within 4 steps on TIGER codes, where the math kernel and eager attention stayed finite
# (docs/gpu.md).
SDPA_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH,
                 *([SDPBackend.OVERRIDEABLE] if hasattr(SDPBackend, "OVERRIDEABLE") else [])]  # other devices' own


def attention_kernels() -> Any:
    """Limits scaled_dot_product_attention to SDPA_BACKENDS while it is open; a backward pass
    uses the kernel its forward pass chose."""
    return sdpa_kernel(SDPA_BACKENDS)


class Backbone(nn.Module, ABC):
    """Subclasses map tokenizer token t to a model id (t + offset), build batches, return the
    loss, and for decoding: `begin` (encode histories once) and `step` (next-token log-probs
    for every live beam, reordering any cache by `parents`)."""

    name: str = ""

    def __init__(self, tokenizer: Tokenizer):
        super().__init__()
        self.tokenizer = tokenizer
        self.max_input_tokens = 0  # the recipe's history budget in item tokens; 0 = no budget

    @property
    def offset(self) -> int:
        return N_SPECIAL

    def item_sequences(self) -> list[tuple[int, ...]]:
        """Each item's code in model ids (the trie is built from these); computed once, since
        a fitted tokenizer's codes do not change."""
        if not hasattr(self, "_item_sequences"):
            self._item_sequences = [tuple(t + self.offset for t in code) for code in self.tokenizer.codes]
        return self._item_sequences

    def trie(self) -> CodeTrie:
        """Every item's code + EOS as a trie on the model's device: what decoding may emit."""
        return CodeTrie.build(self.item_sequences(), EOS).to(next(self.parameters()).device)

    def recent_history(self, history: list[int]) -> list[int]:
        """The most recent items whose history tokens fit `max_input_tokens` (whole items;
        the last item is always kept). Long codes (titles) then see fewer items, and the
        input length, whose attention cost is quadratic, stays bounded."""
        if not self.max_input_tokens:
            return history
        kept, used = 0, 0
        for item in reversed(history):
            used += len(self.tokenizer.history_tokens(item))
            if kept and used > self.max_input_tokens:
                break
            kept += 1
        return history[len(history) - kept:]

    def history_ids(self, history: list[int], rng: np.random.Generator | None = None) -> list[int]:
        """The model ids of a history: its recent items, encoded by the tokenizer as a whole
        (`rng`: a context-aware tokenizer's segmentation draw; None = deterministic)."""
        return [t + self.offset for t in self.tokenizer.encode_history(self.recent_history(history), rng)]

    @abstractmethod
    def collate(self, histories: list[list[int]], targets: list[int], rngs: Rngs = None) -> dict[str, torch.Tensor]:
        """A training batch; `rngs`: one segmentation draw per history (context-aware tokenizers)."""

    @abstractmethod
    def loss(self, batch: dict[str, torch.Tensor], tau: float = 1.0) -> torch.Tensor: ...

    def forward(self, batch: dict[str, torch.Tensor], tau: float = 1.0) -> torch.Tensor:
        """The training loss: DDP (accelerate) synchronises gradients through forward()."""
        with attention_kernels():
            return self.loss(batch, tau)

    @abstractmethod
    def begin(self, histories: list[list[int]], beam: int, rngs: Rngs = None) -> Any:
        """Decoding state for len(histories) * beam rows (user-major); `rngs` as in collate."""

    @abstractmethod
    def step(self, state: Any, tokens: torch.Tensor, parents: torch.Tensor | None) -> torch.Tensor:
        """tokens: [N] last chosen token per row (None rows = start); parents: [N] row each new
        row continues (None on the first step). Returns log-probs [N, vocab]."""

    @abstractmethod
    def sequence_logprob(self, history: list[int], sequences: list[tuple[int, ...]]) -> torch.Tensor:
        """Teacher-forced log-likelihood of each full sequence (EOS appended) after `history`:
        the brute-force reference that beam search approximates."""


def history_read(backbone: Backbone, histories: list[list[int]]) -> str:
    """What the history budget leaves the model to read, so its cost in history is visible."""
    read = [backbone.recent_history(h) for h in histories]
    items = np.mean([len(r) for r in read]) if read else 0.0
    tokens = np.mean([sum(len(backbone.tokenizer.history_tokens(i)) for i in r) for r in read]) if read else 0.0
    available = np.mean([len(h) for h in histories]) if histories else 0.0
    return (f"reads {items:.1f} of {available:.1f} history items on average ({tokens:.0f} tokens) "
            f"under max_input_tokens {backbone.max_input_tokens}")


def per_history(rngs: Rngs, n: int) -> Sequence[np.random.Generator | None]:
    """`rngs`, or n Nones."""
    return [None] * n if rngs is None else rngs


def pad_sequences(seqs: list[list[int]], value: int, left: bool = False) -> torch.Tensor:
    width = max(1, max(len(s) for s in seqs))
    out = torch.full((len(seqs), width), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            if left:
                out[i, width - len(s):] = torch.tensor(s)
            else:
                out[i, : len(s)] = torch.tensor(s)
    return out


def ce_loss(logits: torch.Tensor, labels: torch.Tensor, tau: float) -> torch.Tensor:
    """LETTER's ranking-guided generation loss: cross-entropy on logits / tau (tau 1 = plain CE)."""
    return nn.functional.cross_entropy(logits.float().flatten(0, -2) / tau, labels.flatten(), ignore_index=-100)
