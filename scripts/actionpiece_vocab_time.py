"""Time ActionPiece's vocabulary construction on MovieLens-100K's training sequences.

Features are random but shaped like the `cpu` preset's (4 digits of 256 codes, the first two
shared by ~64 groups of items as text codes are, + 128 hash buckets), so only the data set is
needed. Prints the seconds of every 100 merges and the total:
    python scripts/actionpiece_vocab_time.py [MERGES] [ML100K_DIR]
Run it at two commits (PYTHONPATH=<a worktree of the other commit>) to compare versions.
"""

import sys
import time

import numpy as np

from bench.datasets import load_dataset
from bench.datasets.split import leave_one_out
from bench.tokenizers.actionpiece_core import build_vocabulary
from bench.tokenizers.actionpiece_segment import item_features

merges = int(sys.argv[1]) if len(sys.argv) > 1 else 400
data = load_dataset(f"ml-100k:{sys.argv[2] if len(sys.argv) > 2 else '../shared/data/ml-100k'}")
split = leave_one_out(data)
rng = np.random.default_rng(0)
groups = rng.integers(0, 64, data.n_items)
codes = np.column_stack([groups, groups * 3 % 256, rng.integers(0, 256, data.n_items), rng.integers(0, 256, data.n_items)])
features, n_base = item_features(codes, 128, rng)
corpus = [[features[i] for i in s] for s in split.train_sequences if s]
print(f"{len(corpus)} sequences, {sum(map(len, corpus))} items, {n_base} features")
start = last = time.perf_counter()


def progress(m: int) -> None:
    global last
    if m % 100 == 0:
        now = time.perf_counter()
        print(f"merges {m - 99}-{m}: {now - last:.1f} s", flush=True)
        last = now


build_vocabulary(corpus, n_base + merges, n_base, progress=progress)
print(f"total: {time.perf_counter() - start:.1f} s for {merges} merges")
