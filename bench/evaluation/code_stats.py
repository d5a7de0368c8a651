"""Code-usage statistics of an item index: how evenly each level's codebook is used, and how
many items share a whole code. A tokenizer that wastes its codebook or merges many items
gives the backbone less to work with, whatever its recall."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import BenchError, DataError

# LETTER's spelling: <a_12> is code 12 at level 0 (a), <b_3> code 3 at level 1, ...
LEVEL_TOKEN = re.compile(r"^<([a-z])_(\d+)>$")
# codes/<tokenizer>-seed<s>.index.json, as the runner writes them
CODES_FILE = re.compile(r"^(?P<tokenizer>.+)-seed(?P<seed>\d+)\.index\.json$")

STAT_COLUMNS = ["level", "codebook_size", "used", "usage", "entropy", "normalized_entropy",
                "perplexity", "gini", "prefixes", "items_sharing_prefix", "n_items", "n_unique", "collision_rate",
                "max_group", "collision_groups"]


def load_index(path: Path) -> dict[str, list[str]]:
    """Read and check an `index.json` ({item: [token, ...]})."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such file")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(path, f"not valid JSON ({e})") from None
    check_index(index, path)
    return index


def check_index(index: Any, where: object = "index") -> None:
    if not isinstance(index, dict) or not index:
        raise DataError(where, "expected a non-empty JSON object {item: [token, ...]}")
    for item, tokens in index.items():
        if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
            raise DataError(where, f"item {item!r}: expected a non-empty list of token strings")


def level_codes(index: dict[str, list[str]]) -> tuple[list[list[Any]], bool]:
    """Per level, the code of every item that has that level. With LETTER-style tokens the
    level comes from the letter and the code from the number; otherwise (ID, text tokens) the
    level is the position in the tuple and the code is the token itself.
    Returns (levels, letter_style)."""
    tuples = list(index.values())
    parsed = [[LEVEL_TOKEN.match(t) for t in toks] for toks in tuples]
    letter_style = all(m is not None for ms in parsed for m in ms)
    levels: dict[int, list[Any]] = {}
    if letter_style:
        for ms in parsed:
            for m in ms:
                levels.setdefault(ord(m.group(1)) - ord("a"), []).append(int(m.group(2)))
    else:
        for toks in tuples:
            for pos, tok in enumerate(toks):
                levels.setdefault(pos, []).append(tok)
    n_levels = max(levels) + 1
    return [levels.get(lv, []) for lv in range(n_levels)], letter_style


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of code usage counts (0 = every code used equally, -> 1 = one code)."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = len(x), x.sum()
    if n <= 1 or total == 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float(2.0 * np.sum(ranks * x) / (n * total) - (n + 1) / n)


def level_counts(codes: list[Any], letter_style: bool, codebook_size: int | None) -> np.ndarray:
    """Usage count of every code of a level's codebook, unused codes included (as zeros).
    Codebook size: `codebook_size` if given, else max code + 1 (LETTER style) or the number
    of distinct tokens (other tokens: the codebook is unknown, so every counted code is used)."""
    if not codes:
        return np.zeros(codebook_size or 0, dtype=np.int64)
    if letter_style:
        size = max(codes) + 1
        if codebook_size is not None:
            if codebook_size < size:
                raise BenchError(f"--codebook-size {codebook_size} is smaller than the largest code + 1 ({size})")
            size = codebook_size
        return np.bincount(np.asarray(codes, dtype=np.int64), minlength=size)
    counts = np.array(sorted(Counter(codes).values(), reverse=True), dtype=np.int64)
    if codebook_size is not None:
        if codebook_size < len(counts):
            raise BenchError(f"--codebook-size {codebook_size} is smaller than the {len(counts)} distinct tokens of a level")
        counts = np.concatenate([counts, np.zeros(codebook_size - len(counts), dtype=np.int64)])
    return counts


def level_stats(counts: np.ndarray) -> dict[str, Any]:
    size = int(len(counts))
    total = counts.sum()
    p = counts[counts > 0] / total if total else np.array([])
    entropy = max(0.0, float(-(p * np.log(p)).sum())) if len(p) else 0.0  # never "-0.000"
    return {
        "codebook_size": size,
        "used": int((counts > 0).sum()),
        "entropy": entropy,
        # a codebook of one code carries no information either way: report 0
        "normalized_entropy": entropy / math.log(size) if size > 1 else 0.0,
        "perplexity": math.exp(entropy),
        "gini": gini(counts),
    }


def vocab_codebook_sizes(vocab: list[str]) -> list[int] | None:
    """Per-level codebook sizes from a tokenizer's vocabulary (<a_0>..<a_255> -> 256): the true
    sizes, where inferring from the codes would miss unused top codes. None unless every token
    is LETTER-style (other tokens, or a mix such as ActionPiece's features and merged tokens:
    levels are then positions and the codebook is the tokens seen)."""
    sizes: dict[str, int] = {}
    for token in vocab:
        m = LEVEL_TOKEN.match(token)
        if m is None:
            return None
        sizes[m.group(1)] = max(sizes.get(m.group(1), 0), int(m.group(2)) + 1)
    if not sizes:
        return None
    return [sizes.get(chr(ord("a") + i), 0) for i in range(max(ord(k) - ord("a") for k in sizes) + 1)]


def code_stats(index: dict[str, list[str]], codebook_size: int | list[int] | None = None) -> dict[str, Any]:
    """The `bench codes stats --json` object: collisions over whole tuples and per-level usage.
    `codebook_size`: one size for every level, or a list with one per level."""
    check_index(index)
    groups = Counter(tuple(toks) for toks in index.values())
    n_items, n_unique = len(index), len(groups)
    levels, letter_style = level_codes(index)
    if not isinstance(codebook_size, list):
        codebook_size = [codebook_size] * len(levels)  # type: ignore[list-item]
    codebook_size = (codebook_size + [None] * len(levels))[: len(levels)]
    sizes = Counter(size for size in groups.values() if size > 1)
    return {
        "n_items": n_items,
        "n_unique": n_unique,
        "collision_rate": (n_items - n_unique) / n_items,
        "max_group": max(groups.values()),
        # items sharing a whole code, by group size: "2:10 3:1" = ten pairs and one triple
        "collision_groups": " ".join(f"{size}:{count}" for size, count in sorted(sizes.items())),
        "levels": [{"level": lv, **level_stats(level_counts(codes, letter_style, codebook_size[lv] or None)),
                    **prefix_sharing(index, lv)} for lv, codes in enumerate(levels)],
    }


def prefix_sharing(index: dict[str, list[str]], level: int) -> dict[str, int]:
    """Distinct code prefixes through `level` (tokens 0..level), and the items whose prefix is
    shared with another item: how far down the hierarchy items stay together (the newer audits
    of semantic IDs report this per level)."""
    prefixes = Counter(tuple(toks[: level + 1]) for toks in index.values())
    return {"prefixes": len(prefixes), "items_sharing_prefix": sum(c for c in prefixes.values() if c > 1)}


def stats_frame(stats: dict[str, Any]) -> pd.DataFrame:
    """One row per level, the whole-tuple collision figures repeated on each row."""
    rows = []
    for lv in stats["levels"]:
        row = dict(lv)
        row["usage"] = lv["used"] / lv["codebook_size"] if lv["codebook_size"] else 0.0
        row.update({k: stats[k] for k in ("n_items", "n_unique", "collision_rate", "max_group", "collision_groups")})
        rows.append(row)
    return pd.DataFrame(rows, columns=STAT_COLUMNS)


def code_files(run_dir: Path) -> list[tuple[str, int, Path]]:
    """(tokenizer, seed, path) of every codes/<tokenizer>-seed<s>.index.json of a run."""
    found = []
    for path in sorted((Path(run_dir) / "codes").glob("*.index.json")):
        m = CODES_FILE.match(path.name)
        if m:
            found.append((m.group("tokenizer"), int(m.group("seed")), path))
    return found


def _saved_state(index_path: Path) -> dict[str, Any]:
    """The tokenizer state a run saves beside its index.json ({} when absent or unreadable)."""
    try:
        state = json.loads(Path(index_path).with_suffix(".state.json").read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def saved_codebook_sizes(index_path: Path) -> list[int] | None:
    """Codebook sizes from the tokenizer state saved beside a run's index.json, if any."""
    vocab = _saved_state(index_path).get("vocab")
    return vocab_codebook_sizes(vocab) if isinstance(vocab, list) else None


def saved_collisions(index_path: Path) -> float:
    """Items sharing a semantic code before the tokenizer made codes unique (TIGER's 4th
    level, a `suffix` token): n_items - distinct codes; NaN when no state was saved."""
    value = _saved_state(index_path).get("n_collisions")
    return float(value) if isinstance(value, int) else math.nan


def saved_raw_collisions(index_path: Path) -> float:
    """Items sharing a code as first assigned (argmin), before any re-assignment of the last
    level (LETTER's Sinkhorn rounds, the sinkhorn or reassign policy); NaN when not recorded."""
    from bench.tokenizers.base import saved_collisions_before

    value = saved_collisions_before(_saved_state(index_path))
    return math.nan if value is None else float(value)


# a context-aware tokenizer's segmentation of its training sequences (ActionPiece): distinct tokens
# used / vocabulary, tokens per item, merged-token occurrences spanning two or more items / all
SEQUENCE_STATS = ("vocab_usage", "tokens_per_item", "cross_item_share")
# how often an item's 10 nearest neighbours by its CF embedding share its level-0 code, and the
# same share for random pairs (bench/evaluation/cf_neighbours.py; letter)
CF_SHARING = ("cf_neighbours_share_code0", "random_pairs_share_code0")
DIAGNOSTICS = SEQUENCE_STATS + CF_SHARING


def saved_diagnostics(index_path: Path) -> dict[str, float]:
    """What the tokenizer's fit measured (Tokenizer.diagnostics), as saved beside its codes."""
    stats = _saved_state(index_path).get("diagnostics") or {}
    return {k: float(stats[k]) for k in DIAGNOSTICS if isinstance(stats.get(k), (int, float))}


def run_code_stats(run_dir: Path) -> pd.DataFrame:
    """code_stats.csv of a run: tokenizer, seed, then STAT_COLUMNS (one row per level), and
    DIAGNOSTICS that some tokenizer of the run measured (blank for the others)."""
    frames = []
    for tokenizer, seed, path in code_files(run_dir):
        frame = stats_frame(code_stats(load_index(path), saved_codebook_sizes(path)))
        frame["collisions_assigned"] = saved_raw_collisions(path)
        frame["collisions_before_unique"] = saved_collisions(path)
        for key, value in saved_diagnostics(path).items():
            frame[key] = value
        frame.insert(0, "seed", seed)
        frame.insert(0, "tokenizer", tokenizer)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["tokenizer", "seed", *STAT_COLUMNS, "collisions_assigned", "collisions_before_unique"])
    return pd.concat(frames, ignore_index=True).sort_values(["tokenizer", "seed", "level"], kind="stable",
                                                           ignore_index=True)


def sorted_usage(index: dict[str, list[str]], codebook_size: int | None = None) -> list[np.ndarray]:
    """Per level, code usage counts sorted from most to least used (for Lorenz/frequency plots)."""
    levels, letter_style = level_codes(index)
    return [np.sort(level_counts(codes, letter_style, codebook_size))[::-1] for codes in levels]
