"""The T5 backbone's CPU dropout (bench/backbones/cpu_dropout.py): the mask keeps 1 - p of the
elements scaled by 1 / (1 - p), is fixed by torch's RNG state (so resuming repeats it), and the
training-time attention it needs computes what transformers' SDPA path computes; evaluation
is SDPA's, bit for bit."""

import copy

import numpy as np
import pytest
import torch
from torch import nn
from transformers.models.t5.modeling_t5 import T5Attention

import bench.backbones.cpu_dropout as cpu_dropout
from bench.backbones import T5Backbone
from bench.backbones.cpu_dropout import T5_CPU_ATTENTION, MaskDropout, keep_scale, mask_dropout, use_cpu_dropout
from bench.config import T5Size
from bench.datasets import SyntheticSpec, leave_one_out, make_synthetic
from bench.tokenizers import FitContext, make_tokenizer

SIZE = T5Size(num_layers=2, num_decoder_layers=2, d_model=32, d_ff=64, num_heads=2, d_kv=16, dropout=0.1)


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_the_mask_keeps_one_minus_p_scaled_by_its_inverse(p):
    torch.manual_seed(0)
    scale = keep_scale(torch.Size([400, 500]), p)
    assert scale.shape == (400, 500) and scale.dtype == torch.float32
    kept = scale > 0
    assert set(np.unique(scale.numpy()).tolist()) == {0.0, np.float32(1 / (1 - p))}
    std = (p * (1 - p) / scale.numel()) ** 0.5
    assert abs(1 - kept.float().mean().item() - p) < 5 * std
    # no pattern along either axis (a bug in the word layout would show as striped rows)
    assert kept.float().mean(0).std().item() < 1.5 * (p * (1 - p) / 400) ** 0.5


def test_the_mask_is_fixed_by_torchs_rng_state():
    torch.manual_seed(7)
    state = torch.get_rng_state()
    a, b = keep_scale(torch.Size([1000]), 0.3), keep_scale(torch.Size([1000]), 0.3)
    assert not torch.equal(a, b)  # each call draws a new seed from torch's generator
    torch.set_rng_state(state)  # what a resumed unit does with its checkpoint's RNG state
    assert torch.equal(keep_scale(torch.Size([1000]), 0.3), a)


def test_the_mask_is_pcg64_words_against_a_threshold():
    """The documented stream, so a unit checkpointed by an earlier version of this module
    resumes bit for bit: seed = one torch draw, PCG64's raw 64-bit words read as 32-bit
    halves, kept where a word is >= round(p * 2^32)."""
    torch.manual_seed(11)
    seed = int(torch.randint(0, 2**62, (1,)).item())
    words = np.random.PCG64(seed).random_raw(500).view(np.uint32)[:999]
    expected = np.where(words >= np.uint32(round(0.2 * 2**32)), np.float32(1 / 0.8), np.float32(0.0))
    torch.manual_seed(11)
    assert np.array_equal(keep_scale(torch.Size([27, 37]), 0.2).numpy().ravel(), expected)


def test_mask_dropout_is_the_identity_outside_training():
    x = torch.randn(5, 6)
    assert mask_dropout(x, 0.3, training=False) is x and mask_dropout(x, 0.0) is x
    torch.manual_seed(1)
    y = MaskDropout(0.3)(x)
    torch.manual_seed(1)
    assert torch.equal(y, x * keep_scale(x.shape, 0.3))
    assert torch.equal(MaskDropout(0.3).eval()(x), x)


def _backbone_and_batch():
    data = make_synthetic(SyntheticSpec(n_items=30, n_users=40, branching=(2, 3), mean_length=8, max_length=12, seed=0))
    split = leave_one_out(data)
    tok = make_tokenizer("id")
    tok.fit(FitContext(data, split, 0, device="cpu", log=lambda m: None))
    torch.manual_seed(0)
    backbone = T5Backbone(tok, SIZE)
    idx = np.arange(16)  # histories of different lengths: the encoder mask has padding
    batch = backbone.collate([split.train.histories[i] for i in idx], split.train.targets[idx].tolist())
    assert (batch["attention_mask"] == 0).any()
    return backbone, batch


def _with_torch_dropout(backbone: T5Backbone) -> T5Backbone:
    """A copy with PyTorch's dropout modules and transformers' SDPA attention."""
    other = copy.deepcopy(backbone)
    use_cpu_dropout(other.model, on=False)
    ours = [m for m in backbone.model.modules() if isinstance(m, MaskDropout)]
    theirs = [m for m in other.model.modules() if isinstance(m, nn.Dropout)]
    assert all(type(m) is nn.Dropout for m in theirs) and [m.p for m in theirs] == [m.p for m in ours]
    assert other.model.config._attn_implementation == "sdpa"
    return other


def _logits(backbone: T5Backbone, batch: dict) -> torch.Tensor:
    labels = batch["labels"]
    decoder_input = backbone.model._shift_right(labels.masked_fill(labels == -100, 0))
    return backbone.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          decoder_input_ids=decoder_input, use_cache=False).logits


def test_the_t5_backbone_uses_it_and_evaluates_exactly_as_sdpa():
    backbone, batch = _backbone_and_batch()
    modules = list(backbone.model.modules())
    assert not any(type(m) is nn.Dropout for m in modules) and any(isinstance(m, MaskDropout) for m in modules)
    assert backbone.model.config._attn_implementation == T5_CPU_ATTENTION
    reference = _with_torch_dropout(backbone)
    backbone.eval(), reference.eval()
    with torch.no_grad():
        assert torch.equal(_logits(backbone, batch), _logits(reference, batch))


def test_training_attention_computes_what_sdpa_computes(monkeypatch):
    """With every mask forced to 'keep all', training-mode logits (our attention written out:
    padding mask, causal decoder, cross-attention, position bias) equal SDPA's without dropout."""
    backbone, batch = _backbone_and_batch()
    reference = _with_torch_dropout(backbone).eval()
    monkeypatch.setattr(cpu_dropout, "keep_scale", lambda shape, p: torch.ones(shape))
    backbone.train()
    with torch.no_grad():
        ours, theirs = _logits(backbone, batch), _logits(reference, batch)
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=1e-5)


def test_attention_probabilities_are_dropped_in_training():
    """Hidden dropout off, attention dropout on: two training passes differ, so the attention
    path draws masks (and stays finite with padding)."""
    backbone, batch = _backbone_and_batch()
    for m in backbone.model.modules():
        if isinstance(m, MaskDropout):
            m.p = 0.0
    backbone.train()
    with torch.no_grad():
        a, b = _logits(backbone, batch), _logits(backbone, batch)
    assert torch.isfinite(a).all() and not torch.allclose(a, b)
    for m in backbone.model.modules():
        if isinstance(m, T5Attention):
            m.dropout = 0.0
    with torch.no_grad():
        assert torch.equal(_logits(backbone, batch), _logits(backbone, batch))
