"""The shared recipe: every tokenizer's backbone is trained and evaluated by this code."""

from __future__ import annotations

import atexit
import copy
import json
import math
import os
import random
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import InitProcessGroupKwargs, gather_object
from tqdm.auto import tqdm
from transformers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup

from bench.backbones import Backbone, CodeTrie, Ranked
from bench.backbones.base import Rngs
from bench.backbones.ensemble import ensemble_search, view_rngs
from bench.config import KS, Recipe, schedule_length
from bench.datasets import Samples
from bench.errors import BenchError
from bench.evaluation.metrics import per_user_metrics, target_ranks
from bench.io import atomic_write, no_progress
from bench.stage_clock import Elapsed, clock, since


CHECKPOINT_FORMAT = 1  # bump when the checkpoint's keys change


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_valid: float = float("nan")  # the best validation NDCG@10, or validation loss (recipe.stop_on)
    elapsed: Elapsed = field(default_factory=Elapsed)  # training time, wall and CPU, across resumes
    stopped_by: str = "cap"  # `patience` (validation stopped improving) or `cap` (recipe.epochs reached)


def make_accelerator(device: torch.device) -> Accelerator:
    """One process (the default), or one of N under `accelerate launch` (DDP: gloo on CPU,
    NCCL on GPUs). The runner places the model itself (`device_placement=False`); bf16
    autocast on CUDA. A single process may change device between runs (tests), so its
    accelerate state is reset; launched processes keep theirs."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        AcceleratorState._reset_state(reset_partial_state=True)
    # a long stage on the main process (tokenizer fit, SASRec) keeps the others waiting
    wait = InitProcessGroupKwargs(timeout=timedelta(hours=12))
    accelerator = Accelerator(cpu=device.type == "cpu", mixed_precision="bf16" if device.type == "cuda" else "no",
                              device_placement=False, kwargs_handlers=[wait])
    if accelerator.num_processes > 1:
        atexit.register(release_process_group)  # registering twice is harmless: the second call finds none
    return accelerator


def release_process_group() -> None:
    """Destroy the process group while the interpreter is still whole. Left to interpreter
    teardown, gloo's worker threads can abort a finished process ("terminate called without
    an active exception", pytorch/pytorch#190489), so a launch that did all its work exits -6."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def shard(items: list, accelerator: Accelerator | None) -> list:
    """Process p of n takes items p, p + n, ...; with several processes the list is first
    padded (repeating its head) to a multiple of n, so every process runs as many DDP steps."""
    n = accelerator.num_processes if accelerator is not None else 1
    if n == 1:
        return items
    padded = [items[i % len(items)] for i in range(len(items) + (-len(items)) % n)] if items else []
    return padded[accelerator.process_index::n]


def batches(samples: Samples, batch_size: int, rng: np.random.Generator, limit: int = 0) -> list[np.ndarray]:
    """Shuffled, length-bucketed batches: sort by history length inside chunks of 50 batches
    so padding stays small, then shuffle the batches."""
    order = rng.permutation(len(samples))[: limit or None]  # limit: a random subset each epoch
    lengths = np.array([len(h) for h in samples.histories])
    chunk = batch_size * 50
    out = []
    for lo in range(0, len(order), chunk):
        part = order[lo: lo + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        out += [part[i: i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(out)
    return out


def evaluate(backbone: Backbone, trie: CodeTrie, samples: Samples, recipe: Recipe,
             desc: str = "evaluate", k: int = max(KS), accelerator: Accelerator | None = None,
             ensemble: bool = True) -> Ranked:
    """Constrained beam search for every sample, in batches of users of similar length, over
    the tokenizer's inference views (`ensemble` False: the views early stopping reads).
    Under several processes each takes its share of the same batches and the results are
    gathered by batch, so every process returns what one process would."""
    backbone.eval()
    views = backbone.tokenizer.inference_views(ensemble)
    order = np.argsort([len(h) for h in samples.histories], kind="stable")
    items = np.full((len(samples), k), -1, dtype=np.int64)
    scores = np.full((len(samples), k), -np.inf)
    leaves = np.full((len(samples), recipe.beam), -1, dtype=np.int64)
    n_invalid = 0
    starts = list(range(0, len(order), recipe.eval_batch_size))
    several = accelerator is not None and accelerator.num_processes > 1
    mine = starts[accelerator.process_index::accelerator.num_processes] if several else starts
    done = []
    for lo in tqdm(mine, desc=desc, leave=False, unit="batch", disable=no_progress(_is_main(accelerator))):
        idx = order[lo: lo + recipe.eval_batch_size]
        with _autocast(backbone):
            ranked = ensemble_search(backbone, trie, [samples.histories[i] for i in idx], idx, views, recipe.beam, k,
                                     recipe.length_penalty)
        done.append((lo, ranked))
    if several:
        done = gather_object(done)
    for lo, ranked in done:
        idx = order[lo: lo + recipe.eval_batch_size]
        items[idx], scores[idx] = ranked.items, ranked.scores
        if ranked.leaves is not None:
            leaves[idx, : ranked.leaves.shape[1]] = ranked.leaves
        n_invalid += ranked.n_invalid
    return Ranked(items, scores, n_invalid, leaves)


def _is_main(accelerator: Accelerator | None) -> bool:
    return accelerator is None or accelerator.is_main_process


def _autocast(backbone: Backbone) -> torch.autocast:
    device = backbone.device
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def training_rngs(backbone: Backbone, seed: int, epoch: int, idx: np.ndarray) -> Rngs:
    """A fresh segmentation draw per example and epoch for a context-aware tokenizer (the
    release re-segments every example in every batch), from its own (seed, epoch, sample)
    stream, so a resumed epoch draws the same; None for every other tokenizer."""
    if not backbone.tokenizer.context_aware:
        return None
    return [np.random.default_rng([seed, epoch, int(i)]) for i in idx]


def valid_subset(samples: Samples, n: int, seed: int) -> Samples:
    if n <= 0 or n >= len(samples):
        return samples
    return samples.subset(np.sort(np.random.default_rng(seed).choice(len(samples), n, replace=False)))


def train_step(model: torch.nn.Module, batch: dict[str, torch.Tensor], recipe: Recipe, accelerator: Accelerator,
               optimizer: torch.optim.Optimizer, scheduler: Any) -> float:
    """One optimiser step on `batch` with the prepared (possibly DDP-wrapped) model; bf16
    autocast on CUDA comes with it. Returns the loss."""
    loss = model(batch, recipe.tau)
    optimizer.zero_grad(set_to_none=True)
    accelerator.backward(loss)
    accelerator.clip_grad_norm_(model.parameters(), recipe.max_grad_norm)
    optimizer.step()
    scheduler.step()
    return loss.item()


def train(backbone: Backbone, train_samples: Samples, valid_samples: Samples, recipe: Recipe,
          seed: int, log: Callable[[str], None] = print, desc: str = "train",
          accelerator: Accelerator | None = None, checkpoint: Path | None = None,
          on_epoch: Callable[[dict[str, float]], None] | None = None) -> TrainResult:
    """AdamW, warm-up then cosine or constant rate, early stopping on validation NDCG@10 (or
    validation loss: `recipe.stop_on`); the best state is restored at the end. `on_epoch`
    gets each epoch's history row (trackers). Under N processes (DDP) every process draws the same
    batch list (same seed) and takes batch i when i % N is its index, so a step sees N
    batches. With `checkpoint`, the state after each epoch is saved there and a later call
    that finds the file continues from it, ending as an uninterrupted run would."""
    if len(train_samples) == 0:
        raise ValueError("no training samples: every user has fewer than 4 interactions")
    accelerator = accelerator or make_accelerator(backbone.device)
    main, n = accelerator.is_main_process, accelerator.num_processes
    rng = np.random.default_rng(seed)
    trie = backbone.trie()
    valid = valid_subset(valid_samples, recipe.valid_users, seed)
    # the schedule counts batches over all processes, padding included (see `shard`)
    per_epoch = min(len(train_samples), recipe.samples_per_epoch or len(train_samples))
    steps_per_epoch = math.ceil(math.ceil(per_epoch / recipe.batch_size) / n) * n
    total = steps_per_epoch * schedule_length(recipe)  # a constant rate may outlast it (the cap, recipe.epochs)
    optimizer = torch.optim.AdamW(backbone.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    scheduler = make_scheduler(optimizer, recipe, total)
    result = TrainResult()
    best_state, best, waited, done_epochs, stopped, used = None, -math.inf, 0, 0, False, Elapsed()
    saved = None
    if checkpoint is not None and checkpoint.exists():  # read by every process before any of them writes
        saved = load_checkpoint(checkpoint)
        backbone.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        best_state, best, waited = saved["best_model"], saved["best"], saved["waited"]
        # CPU time is unknown (NaN) for a unit begun before it was recorded
        used = Elapsed(saved["seconds"], saved.get("cpu_seconds", math.nan))
        done_epochs, stopped = saved["epoch"], saved["stopped"]
        result.history, result.best_epoch = list(saved["history"]), saved["best_epoch"]
        log(f"{desc}: resumed from {checkpoint} after epoch {done_epochs}")
    model, optimizer, scheduler = accelerator.prepare(backbone, optimizer, scheduler)
    if saved is not None:
        _set_rng_states(saved["rng"], rng, accelerator, backbone.device, log)
    start = clock() - used
    for epoch in range(done_epochs + 1, recipe.epochs + 1):
        if stopped:
            break
        backbone.train()
        losses = []
        mine = shard(batches(train_samples, recipe.batch_size, rng, recipe.samples_per_epoch), accelerator)
        for idx in tqdm(mine, desc=f"{desc} epoch {epoch}", leave=False, unit="batch", disable=no_progress(main)):
            batch = backbone.collate([train_samples.histories[i] for i in idx], train_samples.targets[idx].tolist(),
                                     training_rngs(backbone, seed, epoch, idx))
            losses.append(train_step(model, batch, recipe, accelerator, optimizer, scheduler))
        if n > 1:
            losses = gather_object(losses)
        used = since(start)
        row = {"epoch": epoch, "train_loss": float(np.mean(losses)), "seconds": used.wall, "cpu_seconds": used.cpu}
        if epoch % recipe.eval_every == 0 or epoch == recipe.epochs:
            if recipe.stop_on == "loss":
                row["valid_loss"] = validation_loss(backbone, valid, recipe, accelerator)
                score, shown = -row["valid_loss"], f"valid loss {row['valid_loss']:.4f}"
            else:
                ranked = evaluate(backbone, trie, valid, recipe, desc="validate", accelerator=accelerator, ensemble=False)
                row["valid_ndcg@10"] = float(per_user_metrics(target_ranks(ranked.items, valid.targets))["ndcg@10"].mean())
                score, shown = row["valid_ndcg@10"], f"valid NDCG@10 {row['valid_ndcg@10']:.4f}"
            if score > best:
                best, waited, result.best_epoch = score, 0, epoch
                best_state = copy.deepcopy(backbone.state_dict())
            else:
                waited += 1
            log(f"{desc} epoch {epoch}: loss {row['train_loss']:.4f}, {shown}")
        result.history.append(row)
        if on_epoch is not None and main:
            on_epoch(row)
        stopped = waited >= recipe.patience and epoch >= recipe.min_epochs
        if checkpoint is not None:
            used = since(start)
            state = {"format": CHECKPOINT_FORMAT, "epoch": epoch, "stopped": stopped, "best": best, "waited": waited,
                     "best_epoch": result.best_epoch, "seconds": used.wall, "cpu_seconds": used.cpu,
                     "history": result.history, "num_processes": n,
                     "model": backbone.state_dict(), "best_model": best_state, "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "rng": _rng_states(rng, accelerator, backbone.device)}
            if main:
                save_checkpoint(checkpoint, state)
        if stopped:
            log(f"{desc}: early stop after epoch {epoch} (best epoch {result.best_epoch})")
    accelerator.free_memory()  # drop accelerate's references to this unit's model and optimizer
    result.stopped_by = "patience" if stopped else "cap"
    if not stopped:
        log(f"{desc}: reached the epoch cap ({recipe.epochs}) while validation was still improving "
            f"within patience {recipe.patience} (best epoch {result.best_epoch})")
    if best_state is not None:
        backbone.load_state_dict(best_state)
    result.best_valid = -best if recipe.stop_on == "loss" else best
    result.elapsed = since(start)
    return result


@torch.no_grad()
def validation_loss(backbone: Backbone, samples: Samples, recipe: Recipe, accelerator: Accelerator) -> float:
    """The training loss (same tau) on the validation targets, teacher-forced: the cheap
    validation signal LETTER-TIGER's release stops on (Hugging Face Trainer's eval_loss)."""
    backbone.eval()
    size = recipe.eval_batch_size * 4  # no beams: a forward pass per batch
    view = backbone.tokenizer.inference_views(False)[0]  # segmented as validation decodes it
    starts = list(range(0, len(samples), size))[accelerator.process_index::accelerator.num_processes]
    sums = []
    for lo in starts:
        idx = np.arange(lo, min(lo + size, len(samples)))
        batch = backbone.collate([samples.histories[i] for i in idx], samples.targets[idx].tolist(), view_rngs(view, idx))
        with _autocast(backbone):
            sums.append((float(backbone(batch, recipe.tau)) * len(idx), len(idx)))
    if accelerator.num_processes > 1:
        sums = gather_object(sums)
    return sum(s for s, _ in sums) / max(1, sum(n for _, n in sums))


def make_scheduler(optimizer: torch.optim.Optimizer, recipe: Recipe, total_steps: int) -> Any:
    """Warm-up over `warmup_ratio` of the schedule's steps, then cosine decay to 0 at their end
    (the cap: a cosine schedule spans every epoch) or flat."""
    warmup = int(recipe.warmup_ratio * total_steps)
    if recipe.schedule == "constant":
        return get_constant_schedule_with_warmup(optimizer, warmup)
    return get_cosine_schedule_with_warmup(optimizer, warmup, total_steps)


# -- checkpoints ---------------------------------------------------------------------------
# One file per unit, torch.save of plain types and tensors only, loaded with weights_only=True.

def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a damaged or foreign file: one user-facing line
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise BenchError(f"{path}: unreadable training checkpoint ({type(e).__name__}: {first}); "
                         "delete it to train this unit from the start") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise BenchError(f"{path}: not a bench training checkpoint (format {CHECKPOINT_FORMAT}); delete it")
    return state


def _rng_states(rng: np.random.Generator, accelerator: Accelerator, device: torch.device) -> dict[str, Any]:
    """The batch generator (the same on every process) and each process's global RNGs."""
    legacy = np.random.get_state()
    mine = {"python": random.getstate(), "numpy": (legacy[0], legacy[1].tolist(), *legacy[2:]),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}
    per_process = gather_object([mine]) if accelerator.num_processes > 1 else [mine]
    return {"batches": json.dumps(rng.bit_generator.state), "processes": per_process}


def _set_rng_states(states: dict[str, Any], rng: np.random.Generator, accelerator: Accelerator,
                    device: torch.device, log: Callable[[str], None]) -> None:
    rng.bit_generator.state = json.loads(states["batches"])
    per_process = states["processes"]
    if len(per_process) != accelerator.num_processes:
        log(f"checkpoint written by {len(per_process)} processes, resumed by {accelerator.num_processes}: "
            "training continues, but not bit for bit")
    mine = per_process[min(accelerator.process_index, len(per_process) - 1)]
    random.setstate(mine["python"])
    name, keys, *rest = mine["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(mine["torch"])
    if device.type == "cuda" and mine["cuda"] is not None:
        torch.cuda.set_rng_state(mine["cuda"], device)
