"""Item embeddings: text (any Hugging Face encoder) and collaborative (SASRec)."""

from bench.embeddings.sasrec import (
    PRESET_OPTIONS as SASREC_PRESETS,
    SASRec,
    cf_embeddings,
    load_or_train_sasrec,
    ndcg_at_k,
    train_sasrec,
)
from bench.embeddings.sasrec import Options as SASRecOptions
from bench.embeddings.text import TextEmbeddings, encode_items, text_embeddings

__all__ = [
    "SASREC_PRESETS", "SASRec", "SASRecOptions", "TextEmbeddings", "cf_embeddings", "encode_items",
    "load_or_train_sasrec", "ndcg_at_k", "text_embeddings", "train_sasrec",
]
