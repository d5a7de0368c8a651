"""Wall-clock and CPU time of a run's stages. CPU time is this process's, all its threads
together: the core-seconds a stage used, however busy the machine was. Wall time also counts
waiting for a core and time the process was paused, so only CPU time compares the cost of
units trained under different loads (two lanes on two cores, a test suite beside them). A unit
trained by N processes (accelerate, DDP) records its main process's CPU time only: about 1/N
of what it used; on a GPU, CPU time is the host's share and wall time the cost that counts."""

from __future__ import annotations

import time
from dataclasses import dataclass


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
