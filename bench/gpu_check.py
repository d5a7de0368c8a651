"""A short paper-size check of this machine: T5 training steps and constrained beam search
with the `paper` preset's model and recipe, printing throughput and peak memory. Meant for a
GPU (scripts/gpu_check.sh); `--device cpu --tiny` runs a small version anywhere."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import click
import numpy as np
import torch
from accelerate.utils import set_seed
from transformers import get_cosine_schedule_with_warmup

from bench.backbones import make_backbone
from bench.cli_common import user_errors
from bench.config import preset_config
from bench.datasets import leave_one_out, load_dataset
from bench.io import atomic_write_text
from bench.options import check, make_options
from bench.runner import resolve_device, versions
from bench.tokenizers import FitContext, make_tokenizer
from bench.training import batches, evaluate, make_accelerator, train_step


@dataclass
class GpuCheckOptions:
    dataset: str = "synthetic"  # synthetic at the preset's size, or letter:PATH (its official codes when present)
    preset: str = "paper"
    device: str = "auto"
    steps: int = 30  # timed training steps
    warmup_steps: int = 3  # untimed steps first (allocation, kernel choice)
    users: int = 1000  # test users decoded
    tiny: bool = False  # quick preset, a small synthetic set, few steps: for CPUs and CI
    seed: int = 0

    def __post_init__(self) -> None:
        check(self.steps > 0 and self.users > 0 and self.warmup_steps >= 0, "steps and users must be > 0")


TINY = {"preset": "quick", "steps": 3, "warmup_steps": 1, "users": 32}
TINY_SETS = {"synthetic.n_items": "200", "synthetic.n_users": "300", "recipe.batch_size": "32", "recipe.eval_batch_size": "16"}


def random_codes(n_items: int, folder: Path, levels: int = 3, codebook: int = 256, seed: int = 0) -> Path:
    """TIGER-shaped codes (3 levels of 256, collisions resolved by a 4th token): decoding
    cost depends on the code shape, not on what the codes mean."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, codebook, size=(n_items, levels))
    letters = "abcdefghijklmnopqrstuvwxyz"
    index = {str(i): [f"<{letters[lv]}_{int(c)}>" for lv, c in enumerate(row)] for i, row in enumerate(codes)}
    path = folder / "random.index.json"
    path.write_text(json.dumps(index))
    return path


def run_gpu_check(o: GpuCheckOptions, log: Callable[[str], None] = print) -> dict[str, Any]:
    device = resolve_device(o.device)
    config = preset_config(o.preset, TINY_SETS if o.tiny else {}, backbone="t5", device=str(device))
    recipe = config.recipe
    data = load_dataset(o.dataset, config.synthetic)
    split = leave_one_out(data)
    with tempfile.TemporaryDirectory() as tmp:
        codes = data.index_path or random_codes(data.n_items, Path(tmp), seed=o.seed)
        tokenizer = make_tokenizer(f"precomputed:{codes}")
        tokenizer.fit(FitContext(data, split, o.seed, str(device), log=log))
    set_seed(o.seed)
    backbone = make_backbone("t5", tokenizer, config).to(device)
    n_params = sum(p.numel() for p in backbone.parameters())
    log(f"{data.name}: {data.n_items} items, {len(split.train)} training samples; T5 {n_params / 1e6:.1f}M parameters "
        f"({o.preset} preset), codes {tokenizer.max_code_length} tokens, vocabulary {len(tokenizer.vocab)}; device {device}")

    accelerator = make_accelerator(device)
    optimizer = torch.optim.AdamW(backbone.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, 0, o.warmup_steps + o.steps)
    model, optimizer, scheduler = accelerator.prepare(backbone, optimizer, scheduler)
    rng = np.random.default_rng(o.seed)
    chosen = [b for b in batches(split.train, recipe.batch_size, rng) if len(b) == recipe.batch_size]
    if not chosen:
        chosen = batches(split.train, recipe.batch_size, rng)
    chosen = [chosen[i % len(chosen)] for i in range(o.warmup_steps + o.steps)]
    backbone.train()

    def step(idx: np.ndarray) -> float:
        batch = backbone.collate([split.train.histories[i] for i in idx], split.train.targets[idx].tolist())
        return train_step(model, batch, recipe, accelerator, optimizer, scheduler)

    for idx in chosen[: o.warmup_steps]:
        step(idx)
    _reset_peak(device)
    start = time.perf_counter()
    samples = 0
    for idx in chosen[o.warmup_steps:]:
        step(idx)
        samples += len(idx)
    _sync(device)
    train_seconds = time.perf_counter() - start
    train_peak = _peak(device)
    accelerator.free_memory()

    users = split.test.subset(np.arange(min(o.users, len(split.test))))
    trie = backbone.trie()
    evaluate(backbone, trie, split.test.subset(np.arange(min(len(split.test), recipe.eval_batch_size))), recipe)  # warm-up
    _reset_peak(device)
    start = time.perf_counter()
    evaluate(backbone, trie, users, recipe)
    _sync(device)
    eval_seconds = time.perf_counter() - start
    report = {
        "device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "dataset": data.name, "preset": o.preset, "tiny": o.tiny, "parameters": n_params,
        "batch_size": recipe.batch_size, "beam": recipe.beam, "eval_batch_size": recipe.eval_batch_size,
        "train_steps": o.steps, "train_samples_per_s": samples / train_seconds, "train_peak_mib": train_peak,
        "eval_users": len(users), "eval_users_per_s": len(users) / eval_seconds, "eval_peak_mib": _peak(device),
        "mixed_precision": accelerator.mixed_precision, "options": asdict(o), "versions": versions(),
    }
    return report


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: torch.device) -> float | None:
    """torch.cuda.max_memory_allocated in MiB since the last reset; None off CUDA."""
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def format_report(r: dict[str, Any]) -> str:
    def mem(v: float | None) -> str:
        return "n/a (not CUDA)" if v is None else f"{v:,.0f} MiB"

    return "\n".join([
        f"device        {r['device']}{' (' + r['gpu'] + ')' if r['gpu'] else ''}, mixed precision {r['mixed_precision']}",
        f"model         T5 {r['parameters'] / 1e6:.1f}M parameters, {r['preset']} preset"
        f"{' (tiny)' if r['tiny'] else ''}, data {r['dataset']}",
        f"training      {r['train_samples_per_s']:,.1f} samples/s (batch {r['batch_size']}, {r['train_steps']} steps), "
        f"peak memory {mem(r['train_peak_mib'])}",
        f"evaluation    {r['eval_users_per_s']:,.1f} users/s (beam {r['beam']}, {r['eval_batch_size']} users a batch, "
        f"{r['eval_users']} users), peak memory {mem(r['eval_peak_mib'])}",
    ])


@click.command()
@click.option("--dataset", default="synthetic", show_default=True, help="synthetic or letter:PATH")
@click.option("--preset", default="paper", show_default=True, help="Model and recipe sizes (quick, cpu, paper).")
@click.option("--device", default="auto", show_default=True, help="auto, cuda, cuda:N, cpu")
@click.option("--steps", type=int, default=None, help="Timed training steps [30; --tiny 3].")
@click.option("--users", type=int, default=None, help="Test users decoded [1000; --tiny 32].")
@click.option("--tiny", is_flag=True, help="Quick preset and a small synthetic set: a smoke test for CPUs.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the figures as JSON.")
@user_errors
def main(dataset: str, preset: str, device: str, steps: int | None, users: int | None, tiny: bool,
         json_path: Path | None) -> None:
    """Paper-size training and evaluation throughput and peak GPU memory."""
    values: dict[str, Any] = dict(TINY) if tiny else {}
    values.update(dataset=dataset, device=device, tiny=tiny)
    if not tiny or preset != "paper":
        values["preset"] = preset
    values.update({k: v for k, v in (("steps", steps), ("users", users)) if v is not None})
    report = run_gpu_check(make_options(GpuCheckOptions, values, "gpu-check"), log=lambda m: click.echo(m, err=True))
    click.echo(format_report(report))
    if json_path is not None:
        atomic_write_text(json_path, json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
