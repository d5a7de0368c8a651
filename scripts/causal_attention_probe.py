"""Which attention kernels train the causal backbone to finite losses under bf16 autocast.

On an H200 (torch 2.11) cuDNN's fused attention, SDPA's first choice there, turned
tiny-llama's loss NaN within 4 steps on TIGER codes; that is why the causal backbone leaves
it out (SDPA_BACKENDS in bench/backbones/base.py). This probe trains the same batches under
each kernel forced on its own (and eager attention, and fp32 without autocast) and prints the
first step whose loss or weights are not finite. Run on a GPU (scripts/gpu_suite.sh does):
    python scripts/causal_attention_probe.py [--device cuda] [--steps 30]
A kernel forced on its own bypasses the backbone's own choice, so a broken kernel shows up
here even though runs never use it."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from unittest import mock

import click
import numpy as np
import torch
from torch.nn.attention import SDPBackend
from transformers import get_cosine_schedule_with_warmup

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.backbones import make_backbone  # noqa: E402
from bench.backbones import base  # noqa: E402
from bench.config import preset_config  # noqa: E402
from bench.datasets import leave_one_out, load_dataset  # noqa: E402
from bench.tokenizers import FitContext, make_tokenizer  # noqa: E402
from bench.training import batches, make_accelerator, train_step  # noqa: E402

KERNELS = {"math": [SDPBackend.MATH], "efficient": [SDPBackend.EFFICIENT_ATTENTION],
           **({"cudnn": [SDPBackend.CUDNN_ATTENTION]} if hasattr(SDPBackend, "CUDNN_ATTENTION") else {})}


def fitted(name: str, data, split, device: str):
    """Random stand-in text embeddings: the kernels' numerics, not the codes' meaning, matter."""
    x = np.random.default_rng(0).standard_normal((data.n_items, 32)).astype(np.float32)
    torch.manual_seed(0)
    tok = make_tokenizer(name)
    tok.fit(FitContext(data, split, 0, device, text_embeddings=lambda: x, log=lambda m: None))
    return tok


def first_bad_step(tok, variant: str, split, device: str, steps: int) -> str:
    config = preset_config("quick", {"causal.lora": "true"}, backbone="causal:tiny-llama", device=device)
    torch.manual_seed(0)
    backbone = make_backbone("causal:tiny-llama", tok, config).to(device)
    if variant == "eager":
        backbone.model.get_base_model().set_attn_implementation("eager")
    accelerator = make_accelerator(torch.device("cpu" if variant == "fp32" else device))  # cpu: no autocast
    optimizer = torch.optim.AdamW(backbone.parameters(), lr=config.recipe.lr, weight_decay=config.recipe.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, 0, steps)
    model, optimizer, scheduler = accelerator.prepare(backbone, optimizer, scheduler)
    losses = []
    # a kernel variant replaces the backbones' own kernel list
    forced = mock.patch.object(base, "SDPA_BACKENDS", KERNELS[variant]) if variant in KERNELS else contextlib.nullcontext()
    try:
        with forced:
            for step, idx in enumerate(batches(split.train, config.recipe.batch_size, np.random.default_rng(0))[:steps]):
                batch = backbone.collate([split.train.histories[i] for i in idx], split.train.targets[idx].tolist())
                losses.append(train_step(model, batch, config.recipe, accelerator, optimizer, scheduler))
                if not np.isfinite(losses[-1]) or not all(torch.isfinite(p).all() for p in backbone.parameters()):
                    return f"not finite at step {step + 1} (loss {losses[0]:.3f} -> {losses[-1]:.3f})"
    except RuntimeError as e:
        return f"error: {str(e).splitlines()[0][:100]}"
    return f"finite for {len(losses)} steps (loss {losses[0]:.3f} -> {losses[-1]:.3f})"


@click.command()
@click.option("--device", default="cuda", show_default=True)
@click.option("--steps", default=30, show_default=True)
def main(device: str, steps: int) -> None:
    data = load_dataset("synthetic", preset_config("quick").synthetic)
    split = leave_one_out(data)
    for name in ("id", "tiger"):
        tok = fitted(name, data, split, device)
        for variant in ("default", *KERNELS, "eager", "fp32"):
            click.echo(f"{name:6s} {variant:9s} {first_bad_step(tok, variant, split, device, steps)}")


if __name__ == "__main__":
    main()
