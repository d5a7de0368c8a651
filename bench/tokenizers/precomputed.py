"""Someone else's codes, from a LETTER-format index.json, e.g. LETTER's official release."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from bench.datasets.letter import read_json
from bench.errors import DataError
from bench.options import check
from bench.tokenizers.base import COLLISION_POLICIES, FitContext, Tokenizer, disambiguate

_LEVEL_TOKEN = re.compile(r"^<([a-z])_(\d+)>$")


@dataclass
class PrecomputedOptions:
    collisions: str = "suffix"  # `keep` reproduces the official release

    def __post_init__(self) -> None:
        check(self.collisions in COLLISION_POLICIES, f"collisions must be one of {COLLISION_POLICIES}")


def _token_order(token: str) -> tuple:
    m = _LEVEL_TOKEN.match(token)
    return (0, m.group(1), int(m.group(2))) if m else (1, token, 0)


def read_index(path: Path, item_ids: list[str]) -> tuple[list[str], list[tuple[int, ...]]]:
    """Vocabulary (level tokens sorted by level, then code) and per-item codes."""
    index = read_json(path)
    if not isinstance(index, dict):
        raise DataError(path, "expected an object {item_id: [token, ...]}")
    missing = [i for i in item_ids if i not in index]
    if missing:
        raise DataError(path, f"no code for item {missing[0]} ({len(missing)} of {len(item_ids)} items missing)")
    extra = set(index) - set(item_ids)
    if extra:
        raise DataError(path, f"item {sorted(extra)[0]} is not in the data set ({len(extra)} unknown items)")
    for item in item_ids:
        tokens = index[item]
        if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
            raise DataError(path, f"item {item}: expected a non-empty list of token strings")
    vocab = sorted({t for item in item_ids for t in index[item]}, key=_token_order)
    lookup = {t: i for i, t in enumerate(vocab)}
    return vocab, [tuple(lookup[t] for t in index[item]) for item in item_ids]


class PrecomputedTokenizer(Tokenizer):
    name = "precomputed"
    Options = PrecomputedOptions
    takes_argument = True

    def fit(self, ctx: FitContext) -> None:
        if not self.argument:
            raise DataError("precomputed", "needs a file: precomputed:PATH/TO/index.json")
        vocab, codes = read_index(Path(self.argument), ctx.data.item_ids)
        self.vocab, self.codes, self.n_collisions = disambiguate(vocab, codes, self.options.collisions)
        if self.n_collisions:
            ctx.log(f"precomputed: {self.n_collisions} collisions (items beyond the first sharing a code) "
                    f"({'disambiguated by a suffix token' if self.options.collisions == 'suffix' else 'kept'})")
