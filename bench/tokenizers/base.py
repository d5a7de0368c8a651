"""The tokenizer interface: fit on a data set, then a code (a tuple of token ids) per item."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from bench.datasets import Dataset, Split
from bench.io import atomic_write_text
from bench.options import make_options

COLLISION_POLICIES = ("suffix", "keep")
LEVEL_LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclass
class FitContext:
    """What a tokenizer may use when fitting. Embeddings are computed lazily and cached, so
    tokenizers that need none cost nothing."""

    data: Dataset
    split: Split
    seed: int
    device: str = "cpu"
    text_embeddings: Callable[[], np.ndarray] = field(default=lambda: _missing("text"))
    cf_embeddings: Callable[[], np.ndarray] = field(default=lambda: _missing("collaborative"))
    log: Callable[[str], None] = print


def _missing(kind: str) -> np.ndarray:
    raise RuntimeError(f"no {kind} embeddings were provided to this FitContext")


@dataclass
class NoOptions:
    pass


class Tokenizer(ABC):
    """Subclasses set `name`, declare `Options` (a dataclass) and implement `fit`, which must
    set `self.vocab` (token strings) and `self.codes` (per item, token ids into `vocab`)."""

    name: ClassVar[str]
    Options: ClassVar[type] = NoOptions
    takes_argument: ClassVar[bool] = False  # `name:ARG`, e.g. precomputed:PATH
    needs_text: ClassVar[bool] = False

    def __init__(self, argument: str | None = None, **options: Any):
        self.argument = argument
        self.options = make_options(self.Options, options, self.name)
        self.vocab: list[str] = []
        self.codes: list[tuple[int, ...]] = []
        self.n_collisions = 0  # n_items - distinct codes, before disambiguation
        # colliding items as first assigned, before any re-assignment of the last level
        # (LETTER's Sinkhorn rounds, collisions=sinkhorn|reassign); None where nothing re-assigns
        self.collisions_before: int | None = None
        self.history: list[dict[str, float]] = []  # per-epoch training log, if any
        # what the fit measured about its codes, as code_stats.DIAGNOSTICS names them (ActionPiece's
        # segmentation of the training sequences; LETTER's CF neighbours sharing a level-0 code)
        self.diagnostics: dict[str, float] = {}

    @property
    def label(self) -> str:
        """The name used in results: `precomputed:PATH` shows as `precomputed-<file stem>`."""
        if self.argument is None:
            return self.name
        return f"{self.name}-{Path(self.argument).name.split('.')[0]}"

    @abstractmethod
    def fit(self, ctx: FitContext) -> None: ...

    def inputs(self) -> set[str]:
        """What `fit` will ask its FitContext for (`text_embeddings`, `cf_embeddings`), so a run
        that dispatches units as jobs computes these once, before them."""
        return {"text_embeddings"} if self.needs_text else set()

    def history_tokens(self, item: int) -> tuple[int, ...]:
        """Tokens that stand for `item` inside a history; the item's code unless overridden."""
        return self.codes[item]

    # -- sequence-level tokenization: the one extension point for tokenizers whose tokens for an
    # item depend on its neighbours (ActionPiece). `codes` stay what decoding emits for an item
    # (its target); only how a whole history becomes tokens, and how many encodings of it
    # decoding fuses, are the tokenizer's.
    context_aware: ClassVar[bool] = False  # True: encode_history draws segmentations from an rng

    def encode_history(self, items: list[int], rng: np.random.Generator | None = None) -> list[int]:
        """A history's tokens, oldest item first. Default: each item's `history_tokens` in turn.
        A context-aware tokenizer overrides it: `rng` draws one of its segmentations (training
        inputs, ensemble members), None asks for its deterministic one."""
        return [t for item in items for t in self.history_tokens(item)]

    def recipe_overrides(self) -> dict[str, Any]:
        """Recipe settings a tokenizer's release fixes for itself (ActionPiece's 50 beams at the
        paper preset); a variant's own recipe changes still win. Default: none."""
        return {}

    def inference_views(self, ensemble: bool) -> list[int | None]:
        """The encodings of every history that decoding ranks and then fuses by rank, as rng
        seeds (None: the deterministic encoding). `ensemble` is True for the reported rankings,
        False for the validation early stopping reads. Default: one deterministic view."""
        return [None]

    # -- derived views ---------------------------------------------------------------------
    @property
    def max_code_length(self) -> int:
        return max(len(c) for c in self.codes)

    def index_json(self, item_ids: list[str]) -> dict[str, list[str]]:
        return {item_ids[i]: [self.vocab[t] for t in code] for i, code in enumerate(self.codes)}

    def save(self, path: Path, item_ids: list[str]) -> None:
        """LETTER-format index.json, plus a sidecar with the vocabulary and state to reload."""
        atomic_write_text(path, json.dumps(self.index_json(item_ids)))
        state = {"name": self.name, "argument": self.argument, "vocab": self.vocab,
                 "n_collisions": self.n_collisions, "collisions_before": self.collisions_before,
                 "history": self.history, "diagnostics": self.diagnostics, "extra": self.extra_state()}
        atomic_write_text(path.with_suffix(".state.json"), json.dumps(state))

    def load(self, path: Path, item_ids: list[str]) -> None:
        state = json.loads(path.with_suffix(".state.json").read_text())
        index = json.loads(path.read_text())
        self.vocab = state["vocab"]
        lookup = {t: i for i, t in enumerate(self.vocab)}
        self.codes = [tuple(lookup[t] for t in index[item]) for item in item_ids]
        self.n_collisions = state["n_collisions"]
        self.collisions_before = saved_collisions_before(state)
        self.history = state["history"]
        self.diagnostics = dict(state.get("diagnostics") or {})
        self.load_extra_state(state["extra"])

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        pass


def saved_collisions_before(state: dict[str, Any]) -> int | None:
    """`collisions_before` of a saved state; older states kept it in "extra" (letter as
    collisions_before_rounds)."""
    extra = state.get("extra") or {}
    value = state.get("collisions_before", extra.get("collisions_before", extra.get("collisions_before_rounds")))
    return int(value) if isinstance(value, int) else None


def level_token(level: int, code: int) -> str:
    """LETTER's token spelling: level 0 -> <a_12>, level 1 -> <b_3>, ..."""
    return f"<{LEVEL_LETTERS[level]}_{code}>"


def collision_groups(codes: list[tuple[int, ...]]) -> list[list[int]]:
    """Groups (of size >= 2) of items sharing a whole code."""
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for item, code in enumerate(codes):
        groups[code].append(item)
    return [g for g in groups.values() if len(g) > 1]


def semantic_codes(levels: np.ndarray, codebook_sizes: list[int], policy: str, every_item: bool = False,
                   spell: Callable[[int, int], str] = None) -> tuple[list[str], list[tuple[int, ...]], int]:  # type: ignore[assignment]
    """Vocabulary and codes from an [n_items, L] array of per-level code indices, then
    `disambiguate`. `spell(level, code)` names the tokens (default LETTER's <a_12>, one letter
    a level, so at most 25 levels; the numbering token is level L's)."""
    spell = spell or level_token
    vocab = [spell(lv, k) for lv, size in enumerate(codebook_sizes) for k in range(size)]
    offsets = np.concatenate([[0], np.cumsum(codebook_sizes)[:-1]]).astype(np.int64)
    codes = [tuple(int(x) for x in row) for row in (levels.astype(np.int64) + offsets)]
    n_levels = len(codebook_sizes)
    return disambiguate(vocab, codes, policy, every_item, suffix_token=lambda k: spell(n_levels, k))


def disambiguate(vocab: list[str], codes: list[tuple[int, ...]], policy: str, every_item: bool = False,
                 suffix_token: Callable[[int], str] | None = None) -> tuple[list[str], list[tuple[int, ...]], int]:
    """policy `suffix`: items that share a code get one more token numbering them within their
    group (`every_item=True` gives every item that token: TIGER's extra level); `keep` leaves
    them identical, as LETTER's release does. `suffix_token(k)` spells the k-th numbering token
    (default: the next level's letter, <d_k> after 3 levels). Returns (vocab, codes, n_collisions) where
    n_collisions = n_items - distinct codes before disambiguation."""
    if policy not in COLLISION_POLICIES:
        raise ValueError(f"collision policy must be one of {COLLISION_POLICIES}, got {policy!r}")
    groups = collision_groups(codes)
    n_colliding = sum(len(g) - 1 for g in groups)  # items beyond the first of each group
    if policy == "keep" or (not groups and not every_item):
        return vocab, codes, n_colliding
    rank = np.zeros(len(codes), dtype=np.int64)
    for g in groups:
        rank[g] = np.arange(len(g))
    suffix_level = max(len(c) for c in codes)
    base = len(vocab)
    spell = suffix_token or (lambda k: level_token(suffix_level, k))
    vocab = vocab + [spell(k) for k in range(int(rank.max()) + 1)]
    colliding = {i for g in groups for i in g}
    codes = [c + (base + int(rank[i]),) if every_item or i in colliding else c for i, c in enumerate(codes)]
    return vocab, codes, n_colliding
