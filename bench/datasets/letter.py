"""A folder in the format LETTER released: X.inter.json, X.item.json, X.index.json,
X.emb-*.npy (text embeddings), X-32d-sasrec.pt (collaborative embeddings)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench.datasets.schema import Dataset
from bench.errors import DataError


def read_json(path: Path) -> object:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(path, f"not valid JSON, truncated or corrupt? ({e})") from None
    except OSError as e:
        raise DataError(path, f"unreadable ({e.strerror or type(e).__name__})") from None


def _as_int(value: object, path: Path, what: str) -> int:
    """Ids are ints or decimal strings ("12"); true, 1.5 or "a" are errors, not silently cast."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise DataError(path, f"{what} {value!r} is not an integer id")


def _ids(keys: list[str], path: Path, what: str) -> list[int]:
    """Object keys as ids: integers, none negative, none repeated ("1" and "01")."""
    ids = [_as_int(k, path, what) for k in keys]
    if ids and min(ids) < 0:
        raise DataError(path, f"{what} id {min(ids)} out of range (negative)")
    if len(set(ids)) != len(ids):
        raise DataError(path, f"the same {what} id appears twice under different spellings")
    return ids


def _text(value: object) -> str | None:
    """A text field as a string; lists (e.g. categories) are joined; anything else skipped."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (str, int, float)):
        return str(value)
    if isinstance(value, list):
        parts = [_text(v) for v in value]
        return ", ".join(p for p in parts if p)
    return None


def find_prefix(folder: Path) -> str:
    if not folder.is_dir():
        raise DataError(folder, "not a folder" if folder.exists() else "folder not found")
    inter = sorted(folder.glob("*.inter.json"))
    if not inter:
        items = sorted(folder.glob("*.item.json"))
        if items:
            raise DataError(folder, f"has {items[0].name} but no *.inter.json: interactions are needed to train and evaluate")
        raise DataError(folder, "no *.inter.json file (expected LETTER's X.inter.json)")
    if len(inter) > 1:
        raise DataError(folder, f"several *.inter.json files: {[p.name for p in inter]}")
    return inter[0].name[: -len(".inter.json")]


def load_letter(path: str) -> Dataset:
    """Every file is checked (ids, shapes, values) so a bad release fails here, in one line."""
    folder = Path(path)
    prefix = find_prefix(folder)
    inter_path = folder / f"{prefix}.inter.json"
    raw = read_json(inter_path)
    if not isinstance(raw, dict):
        raise DataError(inter_path, "expected an object {user_id: [item_id, ...]}")
    users = sorted(raw, key=lambda x: (len(x), x))
    seqs = []
    for u in users:
        items = raw[u]
        if not isinstance(items, list):
            raise DataError(inter_path, f"user {u}: expected a list of item ids")
        seq = [_as_int(i, inter_path, f"user {u}: item") for i in items]
        if seq and min(seq) < 0:
            raise DataError(inter_path, f"user {u}: item id {min(seq)} out of range (negative)")
        seqs.append(seq)
    # items are 0..n-1: the largest id used by the interactions or the item text
    n_items = max((max(s) for s in seqs if s), default=-1) + 1

    item_text = None
    item_path = folder / f"{prefix}.item.json"
    if item_path.exists():
        meta = read_json(item_path)
        if not isinstance(meta, dict):
            raise DataError(item_path, "expected an object {item_id: {title, description}}")
        ids = _ids(list(meta), item_path, "item")
        n_items = max(n_items, max(ids, default=-1) + 1)
        by_id = dict(zip(ids, meta.values()))
        item_text = []
        for i in range(n_items):
            fields = by_id.get(i, {})
            if not isinstance(fields, dict):
                raise DataError(item_path, f"item {i}: expected an object of text fields")
            texts = {k: _text(v) for k, v in fields.items()}
            item_text.append({k: v for k, v in texts.items() if v is not None})

    index_path = folder / f"{prefix}.index.json"
    if index_path.exists():
        index = read_json(index_path)
        if not isinstance(index, dict):
            raise DataError(index_path, "expected an object {item_id: [token, ...]}")
        ids = _ids(list(index), index_path, "item")
        if ids and max(ids) >= n_items:
            raise DataError(index_path, f"item id {max(ids)} out of range (the data set has {n_items} items)")
        for key, tokens in index.items():
            if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
                raise DataError(index_path, f"item {key}: expected a non-empty list of token strings")

    text_embeddings, notes = _load_text_embeddings(folder, prefix, n_items)
    data = Dataset(
        name=prefix,
        item_ids=[str(i) for i in range(n_items)],
        user_ids=users,
        sequences=seqs,
        item_text=item_text,
        source=f"letter:{path}",
        index_path=index_path if index_path.exists() else None,
        text_embeddings=text_embeddings,
        cf_embeddings=_load_cf_embeddings(folder / f"{prefix}-32d-sasrec.pt", n_items),
        notes=notes,
    )
    return data


def _check_matrix(array: np.ndarray, path: Path, n_items: int) -> np.ndarray:
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise DataError(path, f"dtype {array.dtype}, expected numbers")
    if array.ndim != 2 or array.shape[0] != n_items:
        raise DataError(path, f"shape {tuple(array.shape)}, expected ({n_items}, d): one row per item")
    if not np.isfinite(array).all():
        raise DataError(path, "contains NaN or infinite values")
    return array.astype(np.float32)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


def _load_text_embeddings(folder: Path, prefix: str, n_items: int) -> tuple[np.ndarray | None, list[str]]:
    """The first X.emb-*.npy in name order (with a note when there are several)."""
    files = sorted(folder.glob(f"{prefix}.emb-*.npy"))
    if not files:
        return None, []
    notes = [f"text embeddings from {files[0].name}; ignored {', '.join(f.name for f in files[1:])}"] if len(files) > 1 else []
    try:
        array = np.load(files[0], allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - truncated, pickled or not .npy at all: one user-facing error
        raise DataError(files[0], f"not a readable .npy array ({_first_line(e)})") from None
    if not isinstance(array, np.ndarray):
        raise DataError(files[0], "expected one array (.npy), not an archive")
    return _check_matrix(array, files[0], n_items), notes


def _load_cf_embeddings(path: Path, n_items: int) -> np.ndarray | None:
    if not path.exists():
        return None
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is one user-facing error
        raise DataError(path, f"not a readable tensor file ({_first_line(e)})") from None
    if isinstance(obj, dict):
        tensors = [v for v in obj.values() if hasattr(v, "ndim") and v.ndim == 2]
        if len(tensors) != 1:
            raise DataError(path, "expected one [n_items, d] tensor")
        obj = tensors[0]
    if not hasattr(obj, "detach"):
        raise DataError(path, f"expected a tensor, got {type(obj).__name__}")
    return _check_matrix(obj.detach().float().numpy(), path, n_items)
