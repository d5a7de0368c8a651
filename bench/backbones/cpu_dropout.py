"""Dropout on the CPU without PyTorch's Bernoulli kernel, for the T5 backbone's training.

Why: at the `cpu` preset (d_model 64, histories of up to 100 tokens) PyTorch's CPU dropout
draws its mask one Mersenne-Twister number per element, and T5 drops out the attention
probabilities (batch x heads x length x length) as well as every hidden state:
`aten::bernoulli_` was 21-26 % of a training step's CPU time on ML-100K at one thread, more
than all the attention matrix products. Here the mask comes from numpy's PCG64 (raw 32-bit
words compared with a threshold), which made a step 1.15-1.29x faster for `id`, TIGER codes
and `text` (`scripts/bench_cpu_dropout.py`; figures in docs/performance.md).

What stays the same: each element is kept with probability 1 - p (p rounded to 2^-32) and
scaled by 1 / (1 - p), exactly as `torch.nn.functional.dropout`; every mask's seed is one
draw from torch's default CPU generator, so `torch.manual_seed` and a checkpoint's saved RNG
state still fix every mask (a resumed unit continues the same stream). What differs: the
random stream itself, so a unit trained before this module (up to commit 2814c84) is not
reproduced bit for bit by the current code, only in distribution.

Where: T5's `nn.Dropout` modules become `MaskDropout`, and its attention becomes
`T5_CPU_ATTENTION`, which in training on the CPU computes attention as Hugging Face's eager
path does (scores + position bias and mask, softmax, dropout, values) with this mask, and
everywhere else (evaluation, CUDA) calls transformers' own SDPA path, so decoding is exactly
what it was. On CUDA PyTorch's fused dropout is fast and is used unchanged. The decoder-only
backbone keeps PyTorch's kernels (its pretrained models' attention variants are many)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import create_position_bias_mask, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

T5_CPU_ATTENTION = "bench_t5_cpu"


def keep_scale(shape: torch.Size, p: float) -> torch.Tensor:
    """1 / (1 - p) where an element is kept (probability 1 - p), 0 where it is dropped; the
    seed is one draw from torch's default generator."""
    seed = int(torch.randint(0, 2**62, (1,)).item())
    n = int(np.prod(shape))
    words = np.random.PCG64(seed).random_raw((n + 1) // 2).view(np.uint32)[:n]
    # bool x float32 in one pass: the same values as np.where(kept, scale, 0), about 3x faster
    scale = np.multiply(words >= np.uint32(round(p * 2**32)), np.float32(1.0 / (1.0 - p)), dtype=np.float32)
    return torch.from_numpy(scale).view(shape)


def mask_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """`F.dropout(x, p, training)` with `keep_scale`'s mask for float32 CPU tensors."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or x.dtype != torch.float32:
        return F.dropout(x, p, training)
    return x * keep_scale(x.shape, p)


class MaskDropout(nn.Dropout):
    """nn.Dropout whose CPU mask comes from `keep_scale` (a subclass, so code that looks for
    dropout modules still finds it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mask_dropout(x, self.p, self.training)


def t5_cpu_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                     position_bias: torch.Tensor | None = None, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Transformers' SDPA attention, except when it would drop out attention probabilities on
    the CPU: then the same computation written out, with `mask_dropout`. Masks arrive in SDPA's
    format (registered below): boolean (True = attend), or None for an unpadded encoder or a
    causal decoder; T5 always passes its position bias (zeros where a layer has none)."""
    if not (module.training and dropout > 0.0 and query.device.type == "cpu" and query.dtype == torch.float32):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      position_bias=position_bias, **kwargs)
    causal = kwargs.get("is_causal")
    causal = getattr(module, "is_causal", True) if causal is None else causal  # as sdpa_attention_forward
    is_causal = attention_mask is None and query.shape[2] > 1 and bool(causal)
    additive = create_position_bias_mask(position_bias, attention_mask, is_causal, query, key)
    scores = torch.matmul(query, key.transpose(2, 3))
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    if scaling != 1.0:
        scores = scores * scaling
    weights = mask_dropout(torch.softmax(scores + additive, dim=-1), dropout)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), None


AttentionInterface.register(T5_CPU_ATTENTION, t5_cpu_attention)
AttentionMaskInterface.register(T5_CPU_ATTENTION, sdpa_mask)


def use_cpu_dropout(model: nn.Module, on: bool = True) -> None:
    """Swap a Hugging Face T5 model's dropout modules for MaskDropout and its attention for
    T5_CPU_ATTENTION, in place (no parameter or state-dict key changes); on=False swaps back
    to PyTorch's dropout and transformers' SDPA (the reference the tests and the benchmark
    compare with)."""
    for name, child in list(model.named_modules()):
        if type(child) is (nn.Dropout if on else MaskDropout):
            parent_name, _, attr = name.rpartition(".")
            swapped = MaskDropout(child.p) if on else nn.Dropout(child.p)
            setattr(model.get_submodule(parent_name) if parent_name else model, attr, swapped)
    model.set_attn_implementation(T5_CPU_ATTENTION if on else "sdpa")


__all__ = ["MaskDropout", "T5_CPU_ATTENTION", "keep_scale", "mask_dropout", "t5_cpu_attention", "use_cpu_dropout"]
