"""Wall-clock and CPU time of a run's stages. CPU time is this process's, all its threads
together: the core-seconds a stage used, however busy the machine was. Wall time also counts
waiting for a core and time the process was paused, so only CPU time compares the cost of
units trained under different loads (two lanes on two cores, a test suite beside them). A unit
trained by N processes (accelerate, DDP) records its main process's CPU time only: about 1/N
of what it used; on a GPU, CPU time is the host's share and wall time the cost that counts.
Neither compares across machines (LETTER's ML-100K trials took 372 CPU seconds per epoch on
an AVX2-only machine against 183-204 on the one before), so each unit also records the machine
it ran on (`machine_name`)."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class Elapsed:
    wall: float = 0.0  # seconds, time.perf_counter
    cpu: float = 0.0  # seconds, time.process_time; NaN when part of the stage was not measured

    def __add__(self, other: Elapsed) -> Elapsed:
        return Elapsed(self.wall + other.wall, self.cpu + other.cpu)

    def __sub__(self, other: Elapsed) -> Elapsed:
        return Elapsed(self.wall - other.wall, self.cpu - other.cpu)


def clock() -> Elapsed:
    """Both readings now; a stage's time is `since(start)`."""
    return Elapsed(time.perf_counter(), time.process_time())


def since(start: Elapsed) -> Elapsed:
    return clock() - start


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_name(device: torch.device) -> str:
    """What a unit's times were measured on: the CPU model, its cores and the vector
    instructions torch uses (AVX2, AVX512...), and the GPU when the unit ran on one."""
    name = f"{_cpu_model()}, {os.cpu_count()} cores, {torch.backends.cpu.get_cpu_capability()}"
    if device.type == "cuda":
        name += f", {torch.cuda.get_device_name(device)}"
    return name
