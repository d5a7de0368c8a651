"""CPU seconds per training step of the T5 backbone with PyTorch's dropout and SDPA attention
(the reference) and with bench/backbones/cpu_dropout.py's mask, side by side in one process:
the same weights, the same batches, the two alternated over several repeats; then the
share of the reference's step spent in `aten::bernoulli_` (torch.profiler).

  .venv/bin/python scripts/bench_cpu_dropout.py [--dataset SPEC] [--codes SPEC] [--preset cpu]
      [--steps 20] [--repeats 3] [--threads 1]

--codes is any tokenizer spec (`id`, `precomputed:PATH` with a run's codes/*.index.json, ...).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import numpy as np
import torch

from bench.backbones import make_backbone
from bench.backbones.cpu_dropout import use_cpu_dropout
from bench.config import preset_config
from bench.datasets import leave_one_out, load_dataset
from bench.tokenizers import FitContext, make_tokenizer
from bench.training import batches, make_accelerator, train_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="ml-100k:../shared/data/ml-100k")
    parser.add_argument("--codes", default="id")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    a = parser.parse_args()
    torch.set_num_threads(a.threads)
    config = preset_config(a.preset)
    recipe = config.recipe
    data = load_dataset(a.dataset, config.synthetic)
    split = leave_one_out(data)
    tok = make_tokenizer(a.codes, config.tokenizer_options.get(a.codes.partition(":")[0], {}))
    tok.fit(FitContext(data, split, 0, device="cpu", log=lambda m: None))
    torch.manual_seed(0)
    ours = make_backbone("t5", tok, config)  # the preset's size and history budget, as a run
    reference = copy.deepcopy(ours)
    use_cpu_dropout(reference.model, on=False)
    # every batch of the first chunk of an epoch: lengths vary as in training
    chosen = batches(split.train, recipe.batch_size, np.random.default_rng(0))[: a.steps + 2]
    accelerator = make_accelerator(torch.device("cpu"))

    arms = {}
    for name, backbone in (("pytorch", reference), ("mask", ours)):
        optimizer = torch.optim.AdamW(backbone.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        arms[name] = (backbone, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0))

    def steps(name: str, idxs: list[np.ndarray]) -> float:
        backbone, optimizer, scheduler = arms[name]
        backbone.train()
        start = time.process_time()
        for idx in idxs:
            batch = backbone.collate([split.train.histories[i] for i in idx], split.train.targets[idx].tolist())
            train_step(backbone, batch, recipe, accelerator, optimizer, scheduler)
        return (time.process_time() - start) / len(idxs)

    seconds: dict[str, list[float]] = {"pytorch": [], "mask": []}
    for name in arms:  # warm-up
        steps(name, chosen[:2])
    for _ in range(a.repeats):
        for name in arms:
            seconds[name].append(steps(name, chosen[2:]))
    print(f"{a.dataset}, codes {a.codes}, preset {a.preset}, batch {recipe.batch_size}, {a.threads} thread(s), "
          f"{a.steps} steps x {a.repeats} repeats (CPU seconds per step, median and min..max)")
    for name, values in seconds.items():
        print(f"  {name:8s} {statistics.median(values):.3f} s  ({min(values):.3f}..{max(values):.3f})")
    print(f"  speed-up {statistics.median(seconds['pytorch']) / statistics.median(seconds['mask']):.2f}x")
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        steps("pytorch", chosen[2:8])
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    bernoulli = sum(e.self_cpu_time_total for e in events if e.key == "aten::bernoulli_")
    print(f"  aten::bernoulli_ with PyTorch's dropout: {bernoulli / total:.0%} of the step's self CPU time")


if __name__ == "__main__":
    main()
