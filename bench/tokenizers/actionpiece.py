"""`actionpiece`: context-aware tokens (Hou et al., "ActionPiece: Contextually Tokenizing Action
Sequences for Generative Recommendation", ICML 2025), as the official release
google-deepmind/action_piece (genrec/models/ActionPiece/{tokenizer,core,model}.py, config.yaml).

An item is an unordered set of features: the `digits` OPQ codes of its PCA'd text embedding
(faiss `OPQ{m},IVF1,PQ{m}x8`, trained on the training split's items only, as opq.py) plus one
hash bucket that tells apart items with equal codes (a random permutation of `hash_buckets` per
code, the k-th such item taking the k-th). The vocabulary (actionpiece_core.py) merges feature
pairs weighted by co-occurrence inside an item and across adjacent items of the TRAINING
sequences (`Split.train_sequences`) until `vocab_size` tokens. A history is then tokenized as a
whole, so an item's tokens depend on its neighbours (`encode_history`, the sequence-level
extension point of the tokenizer interface):
- training inputs: set permutation regularisation, a fresh segmentation of every example in
  every epoch (release `train_shuffle: feature`);
- targets (`codes`, what decoding emits): the item alone, segmented deterministically (the
  release's `encode_labels`, shuffle `none`);
- inference: `ensemble` random segmentations of each history, each beam-searched, rankings
  fused by rank (bench/backbones/ensemble.py); ensemble -1 decodes the one deterministic
  segmentation (the release's -1). Validation during training, which early stopping reads,
  decodes one random segmentation, as the release's `collate_fn_val` (the deterministic one when
  ensemble is -1); the reported validation and test rankings use the whole ensemble.

Deviations from the release, each named:
- Decoding is the benchmark's constrained beam search over the items' target codes, so every
  recommendation is a catalogue item; the release searches unconstrained for a fixed
  number of steps and drops beams that do not decode to one item. The targets the model is
  trained on are exactly these codes in both.
- The history is the benchmark's (the last 20 items, `recipe.max_input_tokens` counting each
  item's target-code length); the release reads the last 20 items with no token budget and puts
  a BOS token first (no other tokenizer here has one).
- PCA (whitened) is fitted on the training split's items, as opq.py's (the release fits it on
  all items); faiss runs on one thread (opq.FAISS_THREADS). The hash permutations and OPQ are
  seeded by the run's seed (the release: numpy's global state and faiss's fixed seeds).
- Vocabulary counts are exact; the release keeps stale counts of pairs that vanish from a
  sequence (`release_compat=true` reproduces it; see actionpiece_core.py).
- Ranking: finished beams are ranked by sum of log-probs / (tokens + EOS) ** `recipe.length_penalty`,
  1.0 for every tokenizer (the protocol's one decoding rule, Hugging Face's default); the
  release runs every beam a fixed n_categories + 1 steps and ranks by the plain sum, which
  favours short (merged) targets. `--set recipe.length_penalty=0` ranks by the plain sum.
- The validation segmentation early stopping decodes is the same draw at every epoch (the
  release draws anew at each validation pass), so the curve it reads does not move with the draw.
- Each view's whole beam (not only its top k) enters the fusion, as the release's
  `n_return_sequences = maxk` with 50 beams; at `cpu` beam and k are both 20.
- `vocab_size` counts base features and merges; the release's also counts its padding
  token, so its 40,000 is our 39,999.
- Embeddings: the benchmark's text encoder (all-MiniLM-L6-v2, 384-d, at every preset but
  `paper`'s choice of `--embedding-model`); the release encodes with sentence-t5-base (768-d).

Presets: `paper` is the release's config.yaml (vocabulary 40,000 with its padding token, 4 x 256 OPQ codes of a
128-d PCA, 128 hash buckets, ensemble 5, 50 beams). `cpu` (ML-100K: 1,682 items, 384-d
MiniLM) keeps the features and the ensemble and scales the vocabulary to the catalogue: 40,000
tokens for the ~12,000 items of the release's Amazon Beauty is ~3.3 per item, so ML-100K gets
5,000; beams are the recipe's (20, as every tokenizer). `quick` (400 synthetic items, MiniLM)
uses 4 x 32 codes (tiger's codebook size there), 32 buckets, 1,000 tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.errors import BenchError
from bench.options import check
from bench.tokenizers.actionpiece_core import Vocabulary, build_vocabulary
from bench.tokenizers.actionpiece_segment import item_features, segment, segmentation_stats
from bench.tokenizers.base import FitContext, Tokenizer, level_token
from bench.tokenizers.opq import QuantiserOptions, quantise, training_items
from bench.tokenizers.rqvae import checked_embeddings

VALIDATION_VIEW = 0  # the random segmentation early stopping decodes


@dataclass
class ActionPieceOptions(QuantiserOptions):
    # the OPQ features (opq.QuantiserOptions) at the release's values: release pq_n_codebooks,
    # pq_codebook_size and sent_emb_pca
    digits: int = 4
    codebook_size: int = 256
    pca_dim: int = 128
    vocab_size: int = 39999  # base features + merges (release actionpiece_vocab_size 40000 counts its padding token)
    hash_buckets: int = 128  # the extra feature that separates equal codes (release n_hash_buckets)
    ensemble: int = 5  # segmentations fused at inference; -1 = the deterministic one (release n_inference_ensemble)
    beam: int = 0  # beams for this tokenizer; 0 = the recipe's (release num_beams 50)
    release_compat: bool = False  # count pairs as the release does (stale counts; actionpiece_core.py)

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.hash_buckets >= 1, "hash_buckets must be >= 1")
        check(self.ensemble == -1 or self.ensemble >= 1, "ensemble must be -1 (deterministic) or >= 1")
        check(self.beam >= 0, "beam must be >= 0 (0 = the recipe's)")


PRESET_OPTIONS: dict[str, dict[str, object]] = {
    "quick": {"vocab_size": 1000, "codebook_size": 32, "hash_buckets": 32},  # 400 synthetic items
    "cpu": {"vocab_size": 5000},  # ML-100K: ~3.3 tokens per item, the release's Beauty ratio
    "paper": {"beam": 50},  # the release's config.yaml
}


class ActionPieceTokenizer(Tokenizer):
    name = "actionpiece"
    Options = ActionPieceOptions
    needs_text = True
    context_aware = True

    def __init__(self, argument: str | None = None, **options: Any):
        super().__init__(argument, **options)
        self.features: list[tuple[int, ...]] = []  # per item, its feature tokens (base ids)
        self.merges: Vocabulary | None = None

    def fit(self, ctx: FitContext) -> None:
        o: ActionPieceOptions = self.options
        n = ctx.data.n_items
        x = checked_embeddings(ctx.text_embeddings(), n, "text", self.name)
        train = training_items(ctx)
        _, _, _, digits = quantise(x, train, o, ctx.seed, self.name, ctx.log)
        rng = np.random.default_rng(ctx.seed)
        try:
            self.features, n_base = item_features(digits, o.hash_buckets, rng)
        except ValueError as e:
            raise BenchError(f"{self.name}: {e}; raise hash_buckets") from None
        corpus = [[self.features[i] for i in seq] for seq in ctx.split.train_sequences if seq]
        if not corpus:
            raise BenchError(f"{self.name}: the training split has no sequences to count pairs in")
        if o.vocab_size < n_base:
            raise BenchError(f"{self.name}: vocab_size {o.vocab_size} is below the {n_base} base features")
        self.merges = build_vocabulary(corpus, o.vocab_size, n_base, release_compat=o.release_compat)
        self.vocab = self._base_names(digits, n_base) + [f"<ap_{m.token}>" for m in self.merges.merges]
        self.codes = [tuple(segment([f], self.merges)) for f in self.features]  # each item alone: its target
        self.diagnostics = segmentation_stats(corpus, [segment(s, self.merges, np.random.default_rng([ctx.seed, i]))
                                                 for i, s in enumerate(corpus)], self.merges)
        ctx.log(f"{self.name}: {n_base} features ({o.digits} OPQ digits x {o.codebook_size} on {len(train)} training "
                f"items + {o.hash_buckets} hash buckets), {len(self.merges.merges)} merges; "
                f"{self.diagnostics['tokens_per_item']:.2f} tokens per item in training sequences, "
                f"{self.diagnostics['cross_item_share']:.1%} of merged tokens span two items")

    def _base_names(self, digits: np.ndarray, n_base: int) -> list[str]:
        """Base feature names: digit j's code k is LETTER's <a_k>, <b_k>, ...; then the hash
        buckets in use, numbered in order, with the next letter (item_features numbers each
        field's used values in order)."""
        names = [level_token(j, int(v)) for j in range(digits.shape[1]) for v in np.unique(digits[:, j])]
        return names + [level_token(digits.shape[1], k) for k in range(n_base - len(names))]

    # -- sequence-level tokenization ------------------------------------------------------------
    def encode_history(self, items: list[int], rng: np.random.Generator | None = None) -> list[int]:
        if not items:
            return []
        assert self.merges is not None, "fit or load the tokenizer first"
        return segment([self.features[i] for i in items], self.merges, rng)

    def inference_views(self, ensemble: bool) -> list[int | None]:
        e = self.options.ensemble
        if e == -1:
            return [None]
        return list(range(e)) if ensemble else [VALIDATION_VIEW]

    def recipe_overrides(self) -> dict[str, Any]:
        return {"beam": self.options.beam} if self.options.beam else {}

    # -- saved state ----------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        assert self.merges is not None
        return {"features": [list(f) for f in self.features], "vocabulary": self.merges.to_dict()}

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        self.features = [tuple(int(t) for t in f) for f in extra["features"]]
        self.merges = Vocabulary.from_dict(extra["vocabulary"])


__all__ = ["ActionPieceOptions", "ActionPieceTokenizer", "PRESET_OPTIONS"]
