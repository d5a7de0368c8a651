"""Splits. Leave-one-out (LETTER, TIGER, P5): last item test, second-to-last validation.
Global temporal (Ji et al., TOIS 2023; Cornac's NextItemEvaluation.from_timestamps): two
cut-offs on the whole timeline, so no model learns from interactions that happen after the
ones it is tested on (leave-one-out leaks such cross-user future information)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.datasets.schema import Dataset
from bench.errors import BenchError, DataError

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


def temporal_split(data: Dataset, valid_share: float = 0.1, test_share: float = 0.05,
                   max_history: int = MAX_HISTORY) -> Split:
    """Global temporal split. The cut-offs t_valid and t_test are the timestamps below which
    1 - valid_share and 1 - test_share of all interactions lie. Training: every transition
    whose target happens before t_valid (all anything may be fitted on). Validation: each
    user's first interaction in [t_valid, t_test), after everything before it; test: each
    user's first interaction at or after t_test, after everything before it (validation-period
    interactions included, as they happened). One target per user and split keeps per-user
    paired tests. Caveats: only users active after a cut-off are evaluated, so validation and
    test users differ from each other and from leave-one-out's; items first seen after t_valid
    have no training interactions (cold items); users rating in bursts (MovieLens) give few
    test users. `n_dropped_users` counts users with no training interaction."""
    if data.timestamps is None:
        raise BenchError(f"{data.source or data.name}: the temporal split needs timestamps, and this data set "
                         "has none (LETTER's *.inter.json keeps only the order); use data.split=leave-one-out")
    stamps = np.concatenate([np.asarray(t, dtype=np.int64) for t in data.timestamps if t])
    t_valid = int(np.quantile(stamps, 1 - valid_share, method="higher"))
    t_test = int(np.quantile(stamps, 1 - test_share, method="higher"))
    train, valid, test, train_seqs = [], [], [], []
    dropped = 0
    for u, (s, t) in enumerate(zip(data.sequences, data.timestamps)):
        t = np.asarray(t, dtype=np.int64)
        n_train = int(np.searchsorted(t, t_valid, side="left"))  # interactions before t_valid
        n_before_test = int(np.searchsorted(t, t_test, side="left"))
        head = s[:n_train]
        if not head:
            dropped += 1
            continue
        train_seqs.append(head)
        for k in range(1, len(head)):
            train.append((u, head[:k][-max_history:], head[k]))
        if n_train < n_before_test:  # an interaction in [t_valid, t_test)
            valid.append((u, s[:n_train][-max_history:], s[n_train]))
        if n_before_test < len(s):
            test.append((u, s[:n_before_test][-max_history:], s[n_before_test]))
    if not train or not valid or not test:
        raise DataError(data.source or data.name, f"the temporal split (cut-offs at {t_valid} and {t_test}) leaves "
                        f"{len(train)} training, {len(valid)} validation and {len(test)} test samples; every part needs some")
    return Split(_samples(train), _samples(valid), _samples(test), train_seqs, dropped)


def make_split(data: Dataset, kind: str = "leave-one-out", valid_share: float = 0.1, test_share: float = 0.05) -> Split:
    """The split named by `data.split` (DataOptions)."""
    if kind == "temporal":
        return temporal_split(data, valid_share, test_share)
    return leave_one_out(data)
