"""The figures `bench perf` reports and how it takes them: a row per measurement (median and
min..max over repeats), peak memory of a block, wall time with the device synchronised, and the
machine's fp32 matmul rate for scale."""

from __future__ import annotations

import json
import math
import statistics
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch


@dataclass
class Row:
    part: str
    metric: str
    values: list[float]
    unit: str = ""
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else math.nan


@dataclass
class PerfReport:
    rows: list[Row] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)

    def add(self, part: str, metric: str, values: float | list[float], unit: str = "", note: str = "") -> None:
        self.rows.append(Row(part, metric, [float(v) for v in np.atleast_1d(values)], unit, note))

    def table(self) -> str:
        lines = [f"{'part':<10} {'metric':<34} {'median':>12} {'min..max':>23}  unit / note"]
        for r in self.rows:
            spread = f"{min(r.values):.4g}..{max(r.values):.4g}" if len(r.values) > 1 else ""
            lines.append(f"{r.part:<10} {r.metric:<34} {r.median:>12.4g} {spread:>23}  {r.unit}{'  ' + r.note if r.note else ''}")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps({"context": self.context,
                           "rows": [{**asdict(r), "median": r.median} for r in self.rows]}, indent=2)


# -- measuring helpers ------------------------------------------------------------------------

class PeakMemory:
    """Peak resident memory of this process while the block runs (sampled every 5 ms), and
    torch.cuda.max_memory_allocated on CUDA."""

    def __init__(self, device: torch.device):
        import psutil

        self.process, self.device = psutil.Process(), device
        self.peak_rss = 0
        self.cuda_peak = 0

    def _sample(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)
            stop.wait(0.005)

    @contextmanager
    def watch(self) -> Iterator["PeakMemory"]:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.peak_rss = self.process.memory_info().rss  # this part's peak, from where it starts
        stop = threading.Event()
        thread = threading.Thread(target=self._sample, args=(stop,), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()
            self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)
            if self.device.type == "cuda":
                self.cuda_peak = torch.cuda.max_memory_allocated(self.device)

    def report(self, report: PerfReport, part: str) -> None:
        report.add(part, "peak RSS", self.peak_rss / 2**20, "MiB")
        if self.device.type == "cuda":
            report.add(part, "peak CUDA allocated", self.cuda_peak / 2**20, "MiB")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - start, out


def matmul_peak(device: torch.device, n: int = 1024, repeats: int = 5) -> list[float]:
    """fp32 GFLOP/s of an n x n matmul (the best this machine's BLAS does at these threads)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    inner = 10 if device.type == "cpu" else 200
    torch.mm(a, b)
    out = []
    for _ in range(repeats):
        seconds, _ = timed(lambda: [torch.mm(a, b) for _ in range(inner)], device)
        out.append(2 * n**3 * inner / seconds / 1e9)
    return out
