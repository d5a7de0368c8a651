"""Units as jobs. A run's grid (tokenizer variant x seed) is dispatched by an executor:

- `local` with `--jobs 1`: one unit after another in this process (the default);
- `local` with `--jobs N`: N worker processes (concurrent.futures, spawned), each with its
  share of the CPU threads, or, on GPUs, placed on the visible devices in turn (N > GPUs
  puts several units on one card);
- `slurm`: one Slurm array job per unit through submitit (`--slurm KEY=VALUE` passes its
  parameters: partition, time, gpus_per_node, cpus_per_task, ...);
- `submitit-local`: the same submitit path run by submitit's local executor on this machine
  (at most N jobs at a time), to try a cluster set-up before submitting.

The shared stages (data, text embeddings, SASRec/CF embeddings, popularity) run once in the
calling process before the units and are cached on disk for them. A job is an ordinary unit of
the same results folder: it takes the unit's lock, skips a unit whose `done` marker exists,
and writes the same files; the calling process merges and reports, so the `done` markers stay
the single source of truth and a killed job loses only its own unfinished unit."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from bench.errors import BenchError

EXECUTORS = ("local", "slurm", "submitit-local")


@dataclass
class Dispatch:
    """How units are run; nothing here changes a result."""

    executor: str = "local"
    jobs: int = 1
    threads_per_job: int = 0  # 0: this machine's cores // jobs (local); what Slurm gives (slurm)
    slurm: dict[str, Any] = field(default_factory=dict)  # submitit parameters

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise BenchError(f"--executor {self.executor}: unknown (known: {', '.join(EXECUTORS)})")
        if self.jobs < 1 or self.threads_per_job < 0:
            raise BenchError("--jobs must be >= 1 and --threads-per-job >= 0")
        if self.slurm and self.executor == "local":
            raise BenchError("--slurm: only with --executor slurm or submitit-local")

    @property
    def in_process(self) -> bool:
        return self.executor == "local" and self.jobs == 1

    def threads(self) -> int:
        if self.threads_per_job:
            return self.threads_per_job
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, cores // self.jobs)


def parse_slurm(values: tuple[str, ...]) -> dict[str, Any]:
    """`--slurm partition=gpu --slurm timeout_min=60` as submitit parameters: a key that is
    not one of submitit's generic ones gets the `slurm_` prefix (partition -> slurm_partition)."""
    generic = {"timeout_min", "gpus_per_node", "cpus_per_task", "mem_gb", "nodes", "tasks_per_node", "name",
               "stderr_to_stdout"}
    out: dict[str, Any] = {}
    for item in values:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise BenchError(f"--slurm {item!r}: expected KEY=VALUE (e.g. partition=gpu, timeout_min=60)")
        if key not in generic and not key.startswith("slurm_"):
            key = f"slurm_{key}"
        out[key] = _scalar(value.strip())
    return out


def _scalar(value: str) -> Any:
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


@dataclass(frozen=True)
class UnitJob:
    """One unit, as a picklable job: the run's config and the unit's variant and seed."""

    config: Any  # RunConfig
    label: str
    seed: int
    trackers: tuple[str, ...] = ()
    threads: int = 0  # 0: leave torch's default
    score_test: bool = True  # False: a validation-only tuning trial (bench tune)


def run_job(job: UnitJob, device: str | None = None) -> str:
    """Train and evaluate one unit of the results folder (in a worker or a cluster job);
    `device`: the worker's slot, else the config's."""
    import torch

    from bench.runner import Run

    if job.threads:
        torch.set_num_threads(job.threads)
    name = f"{job.label}-seed{job.seed}"
    config = replace(job.config, device=device or job.config.device)
    run = Run(config, log=lambda msg: print(f"[{name}] {msg}", file=sys.stderr, flush=True), score_test=job.score_test,
              trackers=list(job.trackers))
    run.prepare(write_config=False)
    variant = next((v for v in run.variants if v.label == job.label), None)
    if variant is None:
        raise BenchError(f"{run.out}: no variant {job.label} in this run")
    start = time.perf_counter()
    trained = run.locked(run.unit_dir(job.label, job.seed), lambda: run.tokenizer_unit(variant, job.seed))
    return f"{name}: {'finished' if trained else 'taken by another process'} in {time.perf_counter() - start:.0f} s"


def dispatch_jobs(jobs: list[UnitJob], dispatch: Dispatch, folder: Path, device: str,
                  log: Callable[[str], None]) -> list[str]:
    """Run `jobs` with the dispatch's executor (submitit's files under `folder`); one line per
    failed unit."""
    if not jobs:
        return []
    threads = jobs[0].threads
    log(f"{len(jobs)} units as jobs: executor {dispatch.executor}, at most {dispatch.jobs} at a time"
        + (f", {threads} thread(s) each" if threads else ""))
    if dispatch.executor == "local":
        return run_local_pool(jobs, dispatch.jobs, gpu_devices(device), log)
    return run_submitit(jobs, dispatch, folder, log)


# -- local worker processes --------------------------------------------------------------------
_SLOT: dict[str, Any] = {}


def _init_worker(slots: Any, threads: int, devices: list[str]) -> None:
    """Each worker takes a slot: its device (GPUs in turn) and its threads. Progress bars are
    off in workers (their lines would interleave); each log line names its unit."""
    os.environ["BENCH_PROGRESS"] = "0"
    os.environ["OMP_NUM_THREADS"] = str(threads)
    slot = slots.get()
    _SLOT["device"] = devices[slot % len(devices)] if devices else None
    import torch

    torch.set_num_threads(threads)


def _run_in_worker(job: UnitJob) -> str:
    return run_job(job, _SLOT.get("device"))


def run_local_pool(jobs: list[UnitJob], n: int, devices: list[str], log: Callable[[str], None]) -> list[str]:
    """Run `jobs` in `n` spawned worker processes; returns one line per failed unit."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    slots = context.Queue()
    for slot in range(n):
        slots.put(slot)
    failed = []
    threads = jobs[0].threads if jobs else 1
    with ProcessPoolExecutor(max_workers=n, mp_context=context, initializer=_init_worker,
                             initargs=(slots, threads, devices)) as pool:
        futures = {pool.submit(_run_in_worker, job): job for job in jobs}
        for future in as_completed(futures):
            job = futures[future]
            try:
                log(future.result())
            except BrokenProcessPool:
                failed.append(f"{job.label}-seed{job.seed}: its worker process died (killed, or out of memory)")
            except Exception as e:  # noqa: BLE001 - one line per failed unit; the others go on
                failed.append(f"{job.label}-seed{job.seed}: {_first_line(e)}")
    return failed


# -- submitit (Slurm, or its local executor) -----------------------------------------------------
def run_submitit(jobs: list[UnitJob], dispatch: Dispatch, folder: Path, log: Callable[[str], None]) -> list[str]:
    """One submitit job per unit; the calling process waits for them (rerun to resume if it
    is stopped: finished units are kept, and running jobs hold their units' locks)."""
    import submitit

    cluster = "slurm" if dispatch.executor == "slurm" else "local"
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    params = {"name": "bench", **dispatch.slurm}
    if cluster == "slurm" and dispatch.jobs > 1:
        params.setdefault("slurm_array_parallelism", dispatch.jobs)
    try:
        executor.update_parameters(**params)
    except (ValueError, TypeError) as e:
        raise BenchError(f"--slurm: {_first_line(e)}") from None
    failed: list[str] = []
    if cluster == "slurm":
        submitted = list(zip(executor.map_array(run_job, jobs), jobs))
        log(f"submitted {len(submitted)} Slurm jobs (array {submitted[0][0].job_id.split('_')[0]}); logs in {folder}")
        for job, unit in submitted:
            failed += _wait(job, unit, log)
        return failed
    running: list[tuple[Any, UnitJob]] = []
    for unit in jobs:  # at most --jobs at a time
        while len(running) >= dispatch.jobs:
            job, waiting = running.pop(0)
            failed += _wait(job, waiting, log)
        running.append((executor.submit(run_job, unit), unit))
    for job, unit in running:
        failed += _wait(job, unit, log)
    return failed


def _wait(job: Any, unit: UnitJob, log: Callable[[str], None]) -> list[str]:
    try:
        log(f"{job.result()} (job {job.job_id})")
        return []
    except Exception as e:  # noqa: BLE001 - submitit's FailedJobError carries the job's traceback
        return [f"{unit.label}-seed{unit.seed}: {_first_line(e)} (job {job.job_id}, logs: {job.paths.stderr})"]


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    last = next((line for line in reversed(lines) if "Error" in line or "error:" in line), lines[-1] if lines else "")
    return f"{type(error).__name__}: {last[:300]}"


def gpu_devices(device: str) -> list[str]:
    """The devices local workers are placed on: every visible GPU for auto/cuda, the named
    one for cuda:N, none on CPU."""
    import torch

    if device.startswith("cuda:"):
        return [device]
    if device in ("auto", "cuda") and torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return []
