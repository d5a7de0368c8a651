"""MovieLens from the GroupLens files: every rating is an interaction, time order, ties by file order."""

from __future__ import annotations

from pathlib import Path

from bench.datasets.schema import Dataset
from bench.errors import DataError

ML100K_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
]


def _need(path: Path) -> Path:
    if not path.is_file():
        raise DataError(path, "file not found")
    return path


def _sequences(rows: list[tuple[str, str, int, int]], source: str
               ) -> tuple[list[str], list[str], list[list[int]], list[list[int]]]:
    """rows: (user, item, timestamp, line number); sorted stably by (user, time). Returns
    items, users, each user's item sequence and the matching timestamps."""
    if not rows:
        raise DataError(source, "no interactions")
    items = sorted({r[1] for r in rows}, key=lambda x: (len(x), x) if x.isdigit() else (0, x))
    item_index = {it: i for i, it in enumerate(items)}
    by_user: dict[str, list[tuple[int, int, int]]] = {}
    for user, item, ts, line in rows:
        by_user.setdefault(user, []).append((ts, line, item_index[item]))
    users = sorted(by_user, key=lambda x: (len(x), x) if x.isdigit() else (0, x))
    ordered = [sorted(by_user[u]) for u in users]
    seqs = [[it for _, _, it in rows_u] for rows_u in ordered]
    times = [[ts for ts, _, _ in rows_u] for rows_u in ordered]
    return items, users, seqs, times


def _fields(path: Path, sep: str):
    """(line number, fields) of every non-blank line of a latin-1 GroupLens file."""
    with open(path, encoding="latin-1") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                yield n, line.rstrip("\r\n").split(sep)


def _dataset(name: str, path: str, rows: list[tuple[str, str, int, int]], meta: dict[str, dict[str, str]],
             data_file: Path, meta_file: Path) -> Dataset:
    items, users, seqs, times = _sequences(rows, str(data_file))
    missing = [it for it in items if it not in meta]
    if missing:
        raise DataError(meta_file, f"no entry for item {missing[0]} (and {len(missing) - 1} more) used in {data_file.name}")
    return Dataset(name, items, users, seqs, [meta[it] for it in items], source=f"{name}:{path}", timestamps=times)


def load_ml100k(path: str) -> Dataset:
    folder = Path(path)
    data_file, item_file = _need(folder / "u.data"), _need(folder / "u.item")
    rows = []
    for n, parts in _fields(data_file, "\t"):
        if len(parts) != 4 or not all(p.strip().lstrip("-").isdigit() for p in parts):
            raise DataError(data_file, f"line {n}: expected 'user<TAB>item<TAB>rating<TAB>timestamp'")
        rows.append((parts[0].strip(), parts[1].strip(), int(parts[3]), n))
    meta = {}
    for n, parts in _fields(item_file, "|"):
        if len(parts) != 5 + len(ML100K_GENRES):
            raise DataError(item_file, f"line {n}: expected {5 + len(ML100K_GENRES)} '|'-separated fields, got {len(parts)}")
        genres = ", ".join(g for g, flag in zip(ML100K_GENRES, parts[5:]) if flag.strip() == "1")
        meta[parts[0].strip()] = {"title": parts[1].strip(), "description": "Genres: " + genres, "categories": genres}
    return _dataset("ml-100k", path, rows, meta, data_file, item_file)


def load_ml1m(path: str) -> Dataset:
    folder = Path(path)
    ratings, movies = _need(folder / "ratings.dat"), _need(folder / "movies.dat")
    rows = []
    for n, parts in _fields(ratings, "::"):
        if len(parts) != 4 or not all(p.strip().isdigit() for p in parts):
            raise DataError(ratings, f"line {n}: expected 'user::item::rating::timestamp'")
        rows.append((parts[0].strip(), parts[1].strip(), int(parts[3]), n))
    meta = {}
    for n, parts in _fields(movies, "::"):
        if len(parts) != 3 or not parts[0].strip().isdigit():
            raise DataError(movies, f"line {n}: expected 'item::title::genres'")
        genres = parts[2].replace("|", ", ")
        meta[parts[0].strip()] = {"title": parts[1].strip(), "description": "Genres: " + genres, "categories": genres}
    return _dataset("ml-1m", path, rows, meta, ratings, movies)
