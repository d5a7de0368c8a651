"""Run by tests/test_accelerate.py under `accelerate launch` (2 CPU processes): a tiny
`bench run`, then the sharded evaluation of a fixed checkpoint, written by the main process."""

from __future__ import annotations

import atexit
import sys
from pathlib import Path

import numpy as np
import torch

from bench.backbones import CodeTrie, T5Backbone
from bench.backbones.base import EOS
from bench.cli import main
from bench.config import Recipe, T5Size
from bench.datasets import SyntheticSpec, leave_one_out, make_synthetic
from bench.tokenizers import FitContext, make_tokenizer
from bench.training import evaluate, make_accelerator

SPEC = SyntheticSpec(n_items=60, n_users=80)
SIZE = T5Size(num_layers=1, num_decoder_layers=1, d_model=32, d_ff=64, num_heads=2, d_kv=16)
RECIPE = Recipe(eval_batch_size=16, epochs=1, batch_size=32)


def fixed_model() -> tuple[T5Backbone, object]:
    """The tiny model and split both sides rebuild; the weights come from the checkpoint."""
    data = make_synthetic(SPEC)
    split = leave_one_out(data)
    tokenizer = make_tokenizer("id")
    tokenizer.fit(FitContext(data, split, 0, log=lambda m: None))
    torch.manual_seed(0)
    return T5Backbone(tokenizer, SIZE), split


def sharded_test_ranking(checkpoint: Path, out: Path) -> None:
    backbone, split = fixed_model()
    backbone.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    accelerator = make_accelerator(torch.device("cpu"))
    trie = CodeTrie.build(backbone.item_sequences(), EOS)
    ranked = evaluate(backbone, trie, split.test, RECIPE, accelerator=accelerator)
    if accelerator.is_main_process:
        np.savez(out, items=ranked.items, scores=ranked.scores, processes=accelerator.num_processes)


def report_released_process_group() -> None:
    """Registered before bench makes its accelerator, so it runs after bench's exit handler."""
    print(f"process group released: {not torch.distributed.is_initialized()}", file=sys.stderr)


if __name__ == "__main__":
    atexit.register(report_released_process_group)
    checkpoint, ranking, *run_args = sys.argv[1:]
    main(["run", *run_args], standalone_mode=False)
    sharded_test_ranking(Path(checkpoint), Path(ranking))
