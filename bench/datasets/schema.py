"""The one in-memory form every loader produces."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.errors import DataError

TEXT_FIELDS = ("title", "description", "brand", "categories")


@dataclass
class Dataset:
    """Items are dense ids 0..n_items-1; each user has a chronological list of item ids.

    `item_ids` / `user_ids` keep the source's own ids so results can be checked against the
    raw files. Optional side data (official codes, text or CF embeddings) is carried along
    when a loader finds it.
    """

    name: str
    item_ids: list[str]
    user_ids: list[str]
    sequences: list[list[int]]
    item_text: list[dict[str, str]] | None = None
    source: str = ""
    index_path: Path | None = None
    text_embeddings: np.ndarray | None = None
    cf_embeddings: np.ndarray | None = None
    timestamps: list[list[int]] | None = None  # per user, aligned with `sequences` (a temporal split needs them)
    notes: list[str] = field(default_factory=list)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_interactions(self) -> int:
        return sum(len(s) for s in self.sequences)

    @property
    def has_text(self) -> bool:
        return self.item_text is not None

    def titles(self) -> list[str]:
        """Each item's title; falls back to its description; refuses items with neither."""
        if self.item_text is None:
            raise DataError(self.source or self.name, "this data set has no item text (needed by a text-based tokenizer)")
        out = []
        for i, fields in enumerate(self.item_text):
            title = (fields.get("title") or "").strip() or (fields.get("description") or "").strip()
            if not title:
                raise DataError(self.source or self.name, f"item {self.item_ids[i]} has neither title nor description")
            out.append(title)
        return out

    def validate(self) -> None:
        where = self.source or self.name
        if self.n_items == 0 or self.n_users == 0:
            raise DataError(where, "the data set is empty (no items or no users)")
        if len(self.sequences) != self.n_users:
            raise DataError(where, f"{len(self.sequences)} sequences for {self.n_users} users")
        if len(set(self.item_ids)) != self.n_items:
            raise DataError(where, "duplicate item ids")
        for u, seq in enumerate(self.sequences):
            if seq and (min(seq) < 0 or max(seq) >= self.n_items):
                raise DataError(where, f"user {self.user_ids[u]} has an item id outside 0..{self.n_items - 1}")
        if self.timestamps is not None and [len(t) for t in self.timestamps] != [len(s) for s in self.sequences]:
            raise DataError(where, "timestamps do not match the interaction sequences")
        if self.item_text is not None and len(self.item_text) != self.n_items:
            raise DataError(where, f"{len(self.item_text)} item texts for {self.n_items} items")
        for name, emb in (("text embeddings", self.text_embeddings), ("CF embeddings", self.cf_embeddings)):
            if emb is None:
                continue
            if emb.ndim != 2 or emb.shape[0] != self.n_items:
                raise DataError(where, f"{name} have shape {tuple(emb.shape)}, expected ({self.n_items}, d)")
            if not np.isfinite(emb).all():
                raise DataError(where, f"{name} contain NaN or infinite values")

    def fingerprint(self) -> str:
        """A short hash of the interactions and item text: keys caches and results."""
        h = hashlib.sha256()
        h.update(json.dumps([self.item_ids, self.user_ids], separators=(",", ":")).encode())
        for seq in self.sequences:
            h.update(np.asarray(seq, dtype=np.int64).tobytes())
            h.update(b"|")
        if self.item_text is not None:
            h.update(json.dumps(self.item_text, sort_keys=True, separators=(",", ":")).encode())
        return h.hexdigest()[:16]
