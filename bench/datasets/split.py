"""Leave-one-out split (LETTER, TIGER, P5): last item test, second-to-last validation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.datasets.schema import Dataset
from bench.errors import DataError

MAX_HISTORY = 20
MIN_SEQUENCE = 3


@dataclass
class Samples:
    """(user, history, target) triples; `users` index into Dataset.user_ids."""

    users: np.ndarray  # [n] int64
    histories: list[list[int]]
    targets: np.ndarray  # [n] int64

    def __len__(self) -> int:
        return len(self.targets)

    def subset(self, idx: np.ndarray | list[int]) -> "Samples":
        idx = np.asarray(idx, dtype=np.int64)
        return Samples(self.users[idx], [self.histories[i] for i in idx], self.targets[idx])


@dataclass
class Split:
    train: Samples
    valid: Samples
    test: Samples
    train_sequences: list[list[int]]  # s[:-2] per kept user: all anything may be fitted on
    n_dropped_users: int

    def train_item_counts(self, n_items: int) -> np.ndarray:
        counts = np.zeros(n_items, dtype=np.int64)
        for seq in self.train_sequences:
            np.add.at(counts, np.asarray(seq, dtype=np.int64), 1)
        return counts


def _samples(rows: list[tuple[int, list[int], int]]) -> Samples:
    users = np.array([r[0] for r in rows], dtype=np.int64)
    targets = np.array([r[2] for r in rows], dtype=np.int64)
    return Samples(users, [r[1] for r in rows], targets)


def leave_one_out(data: Dataset, max_history: int = MAX_HISTORY) -> Split:
    """Users with fewer than 3 interactions cannot give train, valid and test: they are dropped
    and counted (`n_dropped_users`)."""
    train, valid, test, train_seqs = [], [], [], []
    dropped = 0
    for u, s in enumerate(data.sequences):
        if len(s) < MIN_SEQUENCE:
            dropped += 1
            continue
        test.append((u, s[:-1][-max_history:], s[-1]))
        valid.append((u, s[:-2][-max_history:], s[-2]))
        head = s[:-2]
        train_seqs.append(head)
        for k in range(1, len(head)):
            train.append((u, head[:k][-max_history:], head[k]))
    if not test:
        raise DataError(data.source or data.name, f"no user has at least {MIN_SEQUENCE} interactions")
    return Split(_samples(train), _samples(valid), _samples(test), train_seqs, dropped)
