"""`text`: the item's title as its identifier (P5-TID, BIGRec): the model generates the next
item's title, spelled in a subword vocabulary learnt on the catalogue's own titles.

Choices, and why:
- BPE from Hugging Face `tokenizers` with the byte-level pre-tokenizer (GPT-2's): it never
  needs an unknown token, keeps spaces (a title's tokens decode back to its exact text), and
  splits letters, digits and punctuation into separate pre-tokens, so no learnt token can
  spell our own `<sep>` / `<dup_k>` tokens. `add_prefix_space` makes a title's first word the
  same token as that word inside a title.
- The alphabet is the characters the titles use (always kept, even above `vocab_size`).
- Titles are cut to `max_length` tokens; items whose token sequences then coincide (equal or
  truncated-equal titles) each get a numbering token `<dup_k>` (policy `suffix`).
- Titles come from `Dataset.titles()`: the title, else the description, else a DataError
  naming the item.
- Inside histories each item's tokens are followed by `<sep>`, so the model sees where one
  item ends; the target is the item's code alone (the backbone appends EOS).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from bench.options import check
from bench.tokenizers.base import FitContext, Tokenizer, disambiguate

SEPARATOR = "<sep>"


@dataclass
class TextOptions:
    vocab_size: int = 2000  # BPE merges stop here (the character alphabet is always kept)
    max_length: int = 32  # tokens per title, before any <dup_k>; long Amazon titles are cut
    min_frequency: int = 2  # a pair must occur this often to be merged

    def __post_init__(self) -> None:
        for name in ("vocab_size", "max_length", "min_frequency"):
            check(getattr(self, name) >= 1, f"{name} must be >= 1")


# Per-preset overrides the lead's config passes to the constructor.
PRESET_OPTIONS: dict[str, dict[str, object]] = {
    "quick": {"vocab_size": 1000},  # 400 synthetic items
    "cpu": {"vocab_size": 2000},  # ML-100K: 1,682 titles, 8.2 tokens on average
    "paper": {"vocab_size": 4000},  # Amazon catalogues of 10k+ items with long titles
}


def train_bpe(titles: list[str], options: TextOptions) -> HFTokenizer:
    bpe = HFTokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=options.vocab_size, min_frequency=options.min_frequency,
                                  show_progress=False)
    bpe.train_from_iterator(titles, trainer)
    return bpe


class TextTokenizer(Tokenizer):
    name = "text"
    Options = TextOptions
    needs_text = True

    def __init__(self, argument: str | None = None, **options: Any):
        super().__init__(argument, **options)
        self.n_text_tokens = 0  # vocab[:n_text_tokens] are BPE tokens; then <dup_k>, then <sep>
        self.separator = -1

    def inputs(self) -> set[str]:
        return set()  # titles themselves, no embeddings

    def fit(self, ctx: FitContext) -> None:
        o: TextOptions = self.options
        titles = ctx.data.titles()
        bpe = train_bpe(titles, o)
        by_id = sorted(bpe.get_vocab().items(), key=lambda kv: kv[1])
        vocab = [token for token, _ in by_id]
        assert [i for _, i in by_id] == list(range(len(vocab)))  # ids are the list positions
        encoded = [e.ids for e in bpe.encode_batch(titles)]
        codes = [tuple(ids[: o.max_length]) for ids in encoded]
        n_cut = sum(len(ids) > o.max_length for ids in encoded)
        self.n_text_tokens = len(vocab)
        self.vocab, self.codes, self.n_collisions = disambiguate(vocab, codes, "suffix",
                                                                 suffix_token=lambda k: f"<dup_{k}>")
        self.separator = len(self.vocab)
        self.vocab.append(SEPARATOR)
        lengths = [len(c) for c in codes]
        ctx.log(f"text: {len(vocab)} BPE tokens, titles {sum(lengths) / len(lengths):.1f} tokens on average "
                f"(max {max(lengths)}), {n_cut} cut to {o.max_length}, "
                f"{self.n_collisions} collisions (items whose cut title repeats an earlier one)")

    def history_tokens(self, item: int) -> tuple[int, ...]:
        return self.codes[item] + (self.separator,)

    def decode(self, code: tuple[int, ...]) -> str:
        """The title text a code spells (numbering tokens dropped): the exact title unless it
        was cut to `max_length` tokens."""
        words = [self.vocab[t] for t in code if t < self.n_text_tokens]
        text = decoders.ByteLevel().decode(words)
        return text[1:] if text.startswith(" ") else text  # the prefix space the pre-tokenizer added

    def extra_state(self) -> dict[str, Any]:
        return {"n_text_tokens": self.n_text_tokens, "separator": self.separator}

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        self.n_text_tokens = int(extra["n_text_tokens"])
        self.separator = int(extra["separator"])
