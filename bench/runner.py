"""One run end to end: data -> split -> (embeddings) -> tokenizer -> backbone -> decoding ->
metrics, written to results/<run>/. Each (tokenizer, seed) is a unit whose files are written
atomically and marked done, so a killed run loses no finished unit and a rerun resumes."""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from accelerate.utils import set_seed

from bench.backbones import make_backbone
from bench.backbones.base import history_read
from bench.config import KS, RunConfig, sasrec_options
from bench.datasets import Dataset, Samples, Split, load_dataset, make_split
from bench.errors import BenchError
from bench.embeddings.lazy import Embeddings
from bench.evaluation.metrics import code_target_ranks, popularity_ranking
from bench.executor import Dispatch, UnitJob, dispatch_jobs
from bench.variants import Variant, variants
from bench.io import atomic_write_text
from bench.locks import run_locked
from bench.prefit import fit_codes, prefit_shared_quantiser_rows
from bench.results import merge_units
from bench.run_inputs import check_inputs, runnable_tokenizers
from bench.stage_clock import Elapsed, clock, machine_name, since
from bench.run_files import git_commit, merge_saved_config, unit_dir, versions, write_unit_files
from bench.tokenizers import Tokenizer, make_tokenizer
from bench.tracking import UnitTracking, check_trackers
from bench.training import evaluate, make_accelerator, train
from bench.codes_store import add_to_store, store_folders, store_lock, stored_codes
from bench.unit_reuse import copy_codes, reuse_trial, reuse_unit, source_codes, training_settings, write_training

CHECKPOINT = "checkpoint.pt"  # a tokenizer unit's training state after its last finished epoch


def split_data(data: Dataset, config: RunConfig) -> Split:
    o = config.data_options
    return make_split(data, o.split, o.temporal_valid, o.temporal_test)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise BenchError(f"--device: unknown device {name!r} (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchError("--device cuda: no CUDA device is available")
    return device


def default_out(config: RunConfig) -> Path:
    name = config.dataset.partition(":")[0] if ":" not in config.dataset else Path(config.dataset.partition(":")[2]).name
    return Path("results") / f"{name}-{config.preset}-{config.backbone.replace(':', '-').replace('/', '-')}"


class Run:
    """Under `accelerate launch` (N processes) every process loads the data and trains and
    evaluates its share (bench/training.py); the main process alone fits tokenizers
    (computing any embeddings), runs the popularity and SASRec rows and writes every file;
    the others wait and load the codes it saved."""

    def __init__(self, config: RunConfig, log: Callable[[str], None] = print, score_test: bool = True,
                 dispatch: Dispatch | None = None, trackers: list[str] | None = None):
        self.config = config
        self.score_test = score_test  # False: validation only (bench tune); the test split is removed
        self.dispatch = dispatch or Dispatch()
        self.trackers = check_trackers(trackers or [])
        self.out = Path(config.out) if config.out else default_out(config)
        self.device = resolve_device(config.device)
        self.accelerator = make_accelerator(self.device)
        if self.accelerator.num_processes > 1:
            if config.device not in ("auto", "cpu", "cuda"):
                raise BenchError(f"--device {config.device}: under accelerate launch use auto, cpu or cuda "
                                 "(each process takes its own GPU)")
            self.device = self.accelerator.device
        self.main = self.accelerator.is_main_process
        self.log = log if self.main else (lambda msg: None)
        self.tokenizers: list[str] = []
        self.prefit_timings: dict[tuple[str, int], dict[str, Elapsed]] = {}  # (label, seed): its fit's stage times

    # -- setup -----------------------------------------------------------------------------
    def prepare(self, write_config: bool = True) -> None:
        """Data, split, variants and input checks; `write_config=False` in a job, whose calling
        process wrote the folder's config.json."""
        start = time.perf_counter()
        self.data = load_dataset(self.config.dataset, self.config.synthetic)
        self.split = split_data(self.data, self.config)
        if not self.score_test:  # nothing downstream can score, or even see, a test item
            self.split = replace(self.split, test=Samples(np.zeros(0, np.int64), [], np.zeros(0, np.int64)))
        if self.config.data_options.split == "temporal":
            self.log(f"temporal split: {len(self.split.valid)} validation and {len(self.split.test)} test users")
        self.data_seconds = time.perf_counter() - start
        if self.split.n_dropped_users:
            self.log(f"{self.split.n_dropped_users} users with fewer than 3 interactions dropped")
        self.tokenizers = runnable_tokenizers(self.config.tokenizers, self.data, self.config, self.log)
        self.variants = variants(self.config, self.tokenizers)
        check_inputs(self.config, self.variants, self.data)
        self.embeddings = Embeddings(self.data, self.split, self.config, self.device, self.log)
        if write_config:
            self._write_config()  # the first write: every check above runs before the folder exists

    def _write_config(self) -> None:
        resolved = self.config.to_dict()
        resolved.update(out=str(self.out), device=str(self.device), tokenizers=self.tokenizers)
        resolved["labels"] = [v.label for v in self.variants]
        resolved["score_test"] = self.score_test
        resolved["data"] = {"fingerprint": self.data.fingerprint(), "name": self.data.name, "source": self.data.source,
                            "n_users": self.data.n_users, "n_items": self.data.n_items,
                            "n_interactions": self.data.n_interactions, "n_dropped_users": self.split.n_dropped_users,
                            "n_train": len(self.split.train), "n_valid": len(self.split.valid), "n_test": len(self.split.test)}
        resolved["versions"] = versions()
        resolved["git_commit"] = git_commit()
        path = self.out / "config.json"
        resolved = merge_saved_config(path, resolved, self.out)
        self.accelerator.wait_for_everyone()  # every process has read the old config.json
        if self.main:
            try:
                atomic_write_text(path, json.dumps(resolved, indent=2, default=str))
            except OSError as e:
                raise BenchError(f"--out {self.out}: cannot write the results folder ({e.strerror or e})") from None
        self.accelerator.wait_for_everyone()
        self.resolved = resolved

    # -- units -----------------------------------------------------------------------------
    def unit_dir(self, label: str, seed: int) -> Path:
        return unit_dir(self.out, label, seed)

    def run(self) -> Path:
        self.prepare()
        failed: list[str] = []
        if self.dispatch.in_process:
            self.prefit()
            for seed in self.config.seeds:
                self.reference_units(seed)
                for variant in self.variants:
                    self.locked(self.unit_dir(variant.label, seed), lambda: self.tokenizer_unit(variant, seed))
        else:
            failed = self.run_as_jobs()
        if self.main:
            self.merge()
            if self.score_test:  # a validation-only trial has no report
                self.report()
        self.accelerator.wait_for_everyone()
        if failed:
            raise BenchError(f"{len(failed)} unit(s) failed, the others are merged in {self.out} (rerun to resume): "
                             + "; ".join(failed))
        return self.out

    def prefit(self) -> None:
        """Rows that share a quantiser get their codes before any unit trains (bench/prefit.py)."""
        for seed in self.config.seeds:
            for label, timings in prefit_shared_quantiser_rows(self, seed).items():
                self.prefit_timings[(label, seed)] = timings
        self.accelerator.wait_for_everyone()

    def reference_units(self, seed: int) -> None:
        if self.main and self.score_test:  # reference rows; the others go on to the next barrier
            self.locked(self.unit_dir("popularity", seed), lambda: self.popularity_unit(seed))
            self.locked(self.unit_dir("sasrec", seed), lambda: self.sasrec_unit(seed))

    def run_as_jobs(self) -> list[str]:
        """The shared stages here, once (cached on disk), then each unfinished tokenizer unit
        as a job of the executor (bench/executor.py). Returns one line per failed unit."""
        return dispatch_jobs(self.unit_jobs(), self.dispatch, self.out / "submitit", self.config.device, self.log)

    def unit_jobs(self) -> list[UnitJob]:
        """The shared stages (reference rows, embeddings), then every unfinished tokenizer unit
        as a job (bench tune gathers the jobs of all its trials into one dispatch)."""
        if self.accelerator.num_processes > 1:
            raise BenchError("--jobs/--executor: not under accelerate launch (use one or the other)")
        for seed in self.config.seeds:
            self.reference_units(seed)
        inputs = set().union(*(make_tokenizer(v.tokenizer, v.options).inputs() for v in self.variants))
        for seed in self.config.seeds:
            self.embeddings.materialize(inputs, seed)
        self.prefit()  # here, not in the jobs: one machine fits every row that shares a quantiser
        d = self.dispatch
        threads = d.threads_per_job if d.executor == "slurm" else d.threads()
        return [UnitJob(self.config, v.label, seed, tuple(self.trackers), threads, self.score_test)
                for seed in self.config.seeds for v in self.variants
                if not (self.unit_dir(v.label, seed) / "done").exists()]

    def report(self) -> None:
        """report.md and plots; a failure here loses no result (they are all written)."""
        from bench.reporting.report import build_report

        try:
            path = build_report(self.out)
            self.log(f"report: {path}")
        except BenchError as e:
            self.log(f"report not built: {e}")

    def locked(self, unit: Path, work: Callable[[], None]) -> bool:
        """Several runs or jobs may share a folder: each unit is trained by one of them (a lock
        per unit); False when another holds it. Under `accelerate launch` the processes train
        units together, so one launch per folder and no lock."""
        if self.accelerator.num_processes > 1:
            work()
            return True
        return run_locked(unit, work, self.log)

    def popularity_unit(self, seed: int) -> None:
        unit = self.unit_dir("popularity", seed)
        if (unit / "done").exists():
            return
        start = clock()
        counts = self.split.train_item_counts(self.data.n_items)
        rankings = {name: popularity_ranking(counts, len(s), max(KS)) for name, s in self._splits()}
        self.write_unit(unit, "popularity", seed, rankings, [], {"evaluate": since(start)})

    def sasrec_unit(self, seed: int) -> None:
        """SASRec scored over the full catalogue: the non-generative reference row."""
        unit = self.unit_dir("sasrec", seed)
        if (unit / "done").exists():
            return
        from bench.embeddings import load_or_train_sasrec

        start = clock()
        model = load_or_train_sasrec(self.data, self.split, sasrec_options(self.config.sasrec), seed,
                                     str(self.device), log=self.log)
        trained = since(start)
        rankings = {name: model.recommend(s.histories, max(KS)) for name, s in self._splits()}
        self.write_unit(unit, "sasrec", seed, rankings, [], {"train": trained, "evaluate": since(start) - trained})

    def tokenizer_unit(self, variant: Variant, seed: int) -> None:
        tokenizer = make_tokenizer(variant.tokenizer, variant.options)
        label = variant.label
        recipe = replace(self.config.recipe, **{**tokenizer.recipe_overrides(), **variant.recipe})
        unit = self.unit_dir(label, seed)
        self.accelerator.wait_for_everyone()  # the main process has written the previous unit
        if (unit / "done").exists():
            self.log(f"{label} seed {seed}: done already, skipped")
            return
        timings: dict[str, Elapsed] = {}
        set_seed(seed)
        codes_path = self.out / "codes" / f"{label}-seed{seed}.index.json"
        settings = training_settings(self.config, variant, seed, self.data.fingerprint())
        same_codes = self.fitted_codes(variant, seed)
        sources = self.config.reuse_units if variant.reusable else []
        stores = store_folders(self.config, seed) if variant.reusable else []  # a search's one fit (codes_store.py)
        if self.main and self.score_test:
            reuse_unit(sources, settings, label, unit, codes_path, same_codes, self.log)
        self.accelerator.wait_for_everyone()
        if (unit / "done").exists():  # another run's finished unit trained exactly this
            return
        reuse = self.main and variant.reusable
        reused = reuse_trial(self.config, settings, variant, unit, codes_path, same_codes, self.log) if reuse else {}
        self.accelerator.wait_for_everyone()
        have_codes = codes_path.exists() and codes_path.with_suffix(".state.json").exists()
        self.accelerator.wait_for_everyone()  # every process has chosen its branch before codes are written
        start = clock()
        # the main process fits or loads; under a store's lock, so parallel trials fit once
        with store_lock(self.config, tokenizer.label, seed) if self.main else nullcontext():
            if same_codes is not None:  # e.g. an ablation row that changes only the recipe
                tokenizer.load(same_codes, self.data.item_ids)
                if self.main:
                    tokenizer.save(codes_path, self.data.item_ids)
            elif have_codes:  # fitted by an interrupted run of this folder
                tokenizer.load(codes_path, self.data.item_ids)
            elif not self.main:  # the main process fits; this one loads what it saved
                self.accelerator.wait_for_everyone()
                tokenizer.load(codes_path, self.data.item_ids)
            elif (source := stored_codes(stores, tokenizer.label, settings) or source_codes(sources, settings)) is not None:
                tokenizer.load(source, self.data.item_ids)
                copy_codes(source, codes_path)
                self.log(f"{label} seed {seed}: the codes of {source} (the same tokenizer settings)")
                self.accelerator.wait_for_everyone()
            else:
                timings.update(fit_codes(self.embeddings, tokenizer, seed, codes_path, self.data.item_ids))
                if self.config.codes_store:
                    add_to_store(Path(self.config.codes_store), codes_path, tokenizer.label, settings)
                self.accelerator.wait_for_everyone()
        timings.update(self.prefit_timings.pop((label, seed), {}))  # fitted before the run's first unit
        timings.setdefault("tokenizer", since(start))  # codes loaded: the time to load them
        self.log(f"{label} seed {seed}: {len(tokenizer.vocab)} tokens, codes up to {tokenizer.max_code_length} long, "
                 f"{tokenizer.n_collisions} collisions")

        set_seed(seed)
        backbone = make_backbone(self.config.backbone, tokenizer, replace(self.config, recipe=recipe)).to(self.device)
        if recipe.max_input_tokens:
            self.log(f"{label}: {history_read(backbone, self._splits()[-1][1].histories)}")  # test, or validation when tuning
        tracking = UnitTracking(self.trackers if self.main else [], self.out / "trackers", unit.name)
        tracking.config({**self.config.to_dict(), "recipe": vars(recipe), "tokenizer": variant.tokenizer,
                         "tokenizer_options": variant.options, "label": label, "seed": seed})
        result = train(backbone, self.split.train, self.split.valid, recipe, seed, self.log, desc=label,
                       accelerator=self.accelerator, checkpoint=unit / CHECKPOINT,
                       on_epoch=lambda row: tracking.log(row, step=int(row["epoch"])))
        timings["train"] = result.elapsed
        start = clock()
        trie = backbone.trie()
        rankings, invalid, code_ranks = {}, 0, {}
        shared = len(set(tokenizer.codes)) < len(tokenizer.codes)  # collisions kept: scored at code level too
        item_leaf = trie.item_leaves(self.data.n_items) if shared else None
        for name, samples in self._splits():
            ranked = evaluate(backbone, trie, samples, recipe, desc=f"{label} {name}", accelerator=self.accelerator)
            rankings[name] = ranked.items
            invalid += ranked.n_invalid
            if item_leaf is not None:
                code_ranks[name] = code_target_ranks(ranked.leaves, item_leaf[samples.targets])
        timings["evaluate"] = since(start)
        history = [{**row, "best_epoch": result.best_epoch, "stopped_by": result.stopped_by} for row in result.history]
        if self.main:
            write_training(unit, settings)  # before `done`: what --reuse-units compares
            metrics = self.write_unit(unit, label, seed, rankings, history, timings,
                                      extra={"invalid": invalid, "stopped_by": result.stopped_by,
                                             "best_epoch": result.best_epoch, "epochs": len(result.history), **reused},
                                      code_ranks=code_ranks)
            tracking.log({**metrics, "best_epoch": result.best_epoch}, step=len(result.history))
            tracking.finish()
            if self.score_test:  # a tuning trial keeps it: `bench run --tuned` evaluates that model on test
                (unit / CHECKPOINT).unlink(missing_ok=True)

    def fitted_codes(self, variant: Variant, seed: int) -> Path | None:
        """Codes already fitted in this folder by another variant with the same tokenizer settings."""
        for other in self.variants:
            if other.label != variant.label and (other.tokenizer, other.options) == (variant.tokenizer, variant.options):
                path = self.out / "codes" / f"{other.label}-seed{seed}.index.json"
                if path.exists() and path.with_suffix(".state.json").exists():
                    return path
        return None

    def _splits(self) -> list[tuple[str, Samples]]:
        return [("valid", self.split.valid), ("test", self.split.test)] if self.score_test else [("valid", self.split.valid)]

    def write_unit(self, unit: Path, label: str, seed: int, rankings: dict[str, np.ndarray],
                   history: list[dict], timings: dict[str, Elapsed], extra: dict | None = None,
                   code_ranks: dict[str, np.ndarray] | None = None) -> dict[str, float]:
        """All of a unit's files, each atomic; `done` last, so a half-written unit is redone.
        `code_ranks`: per split, the targets' code-level ranks of a tokenizer that keeps
        collisions, written beside the item-level metrics as code_recall, code_ndcg, code_mrr.
        Returns its metrics as `split/metric@k` values."""
        metric_rows = write_unit_files(unit, self.data, dict(self._splits()), label, seed, rankings, history, timings,
                                       extra, code_ranks, machine_name(self.device))
        shown = "test" if self.score_test else "valid"  # a tuning trial never scores test
        at10 = {m: v for (_, _, _, sp, m, k, v) in metric_rows if sp == shown and k == 10}
        self.log(f"{label} seed {seed}: {shown} Recall@10 {at10['recall']:.4f}, NDCG@10 {at10['ndcg']:.4f}")
        return {f"{sp}/{m}@{k}": float(v) for (_, _, _, sp, m, k, v) in metric_rows}

    def merge(self) -> None:
        merge_units(self.out, self.data_seconds)


def fit_tokenizer(config: RunConfig, spec: str, seed: int, log: Callable[[str], None] = print) -> tuple[Tokenizer, Dataset]:
    """The tokenizer stage alone (same data, split, embeddings and options as a run)."""
    device = resolve_device(config.device)
    data = load_dataset(config.dataset, config.synthetic)
    split = split_data(data, config)
    return Embeddings(data, split, config, device, log).fit(make_tokenizer(spec, config.options_for(spec)), seed), data


def run(config: RunConfig, log: Callable[[str], None] = print, dispatch: Dispatch | None = None,
        trackers: list[str] | None = None) -> Path:
    return Run(config, log, dispatch=dispatch, trackers=trackers).run()
