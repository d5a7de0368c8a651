"""One process per unit: a lock file next to each unit folder (filelock's OS-level lock, so
a killed process's lock is released with it and the unit can be taken up again)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from filelock import FileLock, Timeout


def run_locked(unit: Path, work: Callable[[], None], log: Callable[[str], None]) -> bool:
    """Run `work` holding `unit`'s lock; if another process holds it (it is training that unit
    now), skip and return False. `work` itself checks the unit's `done` marker, after the lock
    is taken, so a unit finished meanwhile is not redone."""
    unit.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(unit.with_name(unit.name + ".lock")), timeout=0)
    try:
        with lock:
            work()
    except Timeout:
        log(f"{unit.name}: another process is training it; skipped here")
        return False
    return True
