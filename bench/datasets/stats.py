"""Figures that describe a data set and what the leave-one-out split makes of it
(`bench data stats`, the data cards in docs/datasets.md)."""

from __future__ import annotations

import numpy as np

from bench.datasets.schema import Dataset
from bench.datasets.split import MIN_SEQUENCE, leave_one_out


def dataset_stats(data: Dataset) -> dict:
    lengths = np.array([len(s) for s in data.sequences], dtype=np.int64)
    # a data set too short to split is still described: every user dropped, no samples
    split = leave_one_out(data) if any(len(q) >= MIN_SEQUENCE for q in data.sequences) else None
    with_text = None
    if data.item_text is not None:
        with_text = sum(1 for f in data.item_text if (f.get("title") or f.get("description") or "").strip())
    return {
        "name": data.name,
        "source": data.source,
        "users": data.n_users,
        "items": data.n_items,
        "interactions": data.n_interactions,
        "sequence_length": {
            "min": int(lengths.min()),
            "median": float(np.median(lengths)),
            "mean": round(float(lengths.mean()), 3),
            "max": int(lengths.max()),
        },
        "sparsity": round(1.0 - data.n_interactions / (data.n_users * data.n_items), 6),
        "users_dropped_by_split": data.n_users if split is None else split.n_dropped_users,
        "min_sequence_for_split": MIN_SEQUENCE,
        "samples": {k: 0 if split is None else len(getattr(split, k)) for k in ("train", "valid", "test")},
        "item_text": data.item_text is not None,
        "items_with_text": with_text,
        "official_index": data.index_path is not None,
        "text_embeddings": None if data.text_embeddings is None else list(data.text_embeddings.shape),
        "cf_embeddings": None if data.cf_embeddings is None else list(data.cf_embeddings.shape),
        "fingerprint": data.fingerprint(),
    }


def format_stats(s: dict) -> str:
    """The human-readable form: one fact a line."""
    seq = s["sequence_length"]
    smp = s["samples"]

    def shape(v: list[int] | None) -> str:
        return "no" if v is None else f"yes {v[0]} x {v[1]}"

    text = "no"
    if s["item_text"]:
        text = f"yes ({s['items_with_text']:,} of {s['items']:,} items have a title or description)"
    return "\n".join([
        f"data set        {s['name']} ({s['source']})",
        f"users           {s['users']:,}",
        f"items           {s['items']:,}",
        f"interactions    {s['interactions']:,}",
        f"sequence length min {seq['min']}, median {seq['median']:g}, mean {seq['mean']:.2f}, max {seq['max']}",
        f"sparsity        {s['sparsity']:.4%}",
        f"split           leave-one-out; {s['users_dropped_by_split']:,} users dropped (< {s['min_sequence_for_split']} interactions)",
        f"samples         train {smp['train']:,}, valid {smp['valid']:,}, test {smp['test']:,}",
        f"item text       {text}",
        f"official index  {'yes' if s['official_index'] else 'no'}",
        f"text embeddings {shape(s['text_embeddings'])}",
        f"CF embeddings   {shape(s['cf_embeddings'])}",
        f"fingerprint     {s['fingerprint']}",
    ])
