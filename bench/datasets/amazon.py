"""Raw Amazon Reviews (2014 or 2018 dumps) -> a LETTER-format folder.

Steps, in order: read reviews; drop repeated (user, item) pairs, keeping the earliest (time,
then file order); k-core filter on users and items, repeated until nothing changes; number
users and items by sorted raw id; order each user's items by (time, file order); clean item
text (HTML unescaped, tags stripped, whitespace collapsed, length capped). Items without a
metadata line are kept with empty text and counted in the data card.

Writes X.inter.json, X.item.json (LETTER's format), X.user2id.json / X.item2id.json
({raw id: dense id}) and a data card X.card.json / X.card.md.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import html
import json
import re
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from bench.errors import DataError
from bench.io import atomic_write_text
from bench.options import check

_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class AmazonOptions:
    kcore: int = 5
    max_title_chars: int = 300
    max_description_chars: int = 2000  # long descriptions are cut, at a word boundary
    max_brand_chars: int = 100
    max_categories_chars: int = 300

    def __post_init__(self) -> None:
        check(self.kcore >= 1, "kcore must be >= 1")
        for name in ("max_title_chars", "max_description_chars", "max_brand_chars", "max_categories_chars"):
            check(getattr(self, name) >= 1, f"{name} must be >= 1")


def open_maybe_gzip(path: Path):
    """Text handle on a plain or gzipped file; gzip is detected by its magic bytes, not the name."""
    try:
        with open(path, "rb") as f:
            magic = f.read(2)
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except IsADirectoryError:
        raise DataError(path, "is a folder, expected a file") from None
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def read_records(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) per non-blank line. Lines are JSON, or Python literals as in the
    2014 metadata dump (single quotes), which json rejects."""
    path = Path(path)
    with open_maybe_gzip(path) as f:
        n = 0
        try:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    try:
                        obj = ast.literal_eval(line)
                    except (ValueError, SyntaxError, MemoryError, RecursionError):
                        raise DataError(path, f"line {n}: neither JSON nor a Python literal") from None
                if not isinstance(obj, dict):
                    raise DataError(path, f"line {n}: expected an object, got {type(obj).__name__}")
                yield n, obj
        except (UnicodeDecodeError, OSError, EOFError) as e:
            raise DataError(path, f"line {n + 1}: unreadable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None


def clean_text(value: object, max_chars: int) -> str:
    """Lists (2018 descriptions, categories) are joined; HTML entities unescaped, tags
    stripped, whitespace collapsed; cut to max_chars at a word boundary."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        parts = [clean_text(v, max_chars) for v in value]
        text = " ".join(p for p in parts if p)
    else:
        text = str(value)
    text = _TAG.sub(" ", html.unescape(text))
    text = _SPACE.sub(" ", text).strip()
    if len(text) > max_chars:
        cut = text[:max_chars]
        space = cut.rfind(" ")
        text = (cut[:space] if space > max_chars // 2 else cut).rstrip()
    return text


def _categories(meta: dict) -> list[str]:
    """2014: `categories` is a list of category paths (lists); 2018: `category` is one list.
    Unique names, first-seen order."""
    raw = meta.get("categories", meta.get("category"))
    if raw is None:
        return []
    if isinstance(raw, str):
        raw = [raw]
    names: list[str] = []
    for entry in raw:
        for name in entry if isinstance(entry, (list, tuple)) else [entry]:
            name = clean_text(name, 10_000)
            if name and name not in names:
                names.append(name)
    return names


def item_fields(meta: dict | None, opts: AmazonOptions) -> dict[str, str]:
    meta = meta or {}
    return {
        "title": clean_text(meta.get("title"), opts.max_title_chars),
        "description": clean_text(meta.get("description"), opts.max_description_chars),
        "brand": clean_text(meta.get("brand"), opts.max_brand_chars),
        "categories": clean_text(", ".join(_categories(meta)), opts.max_categories_chars),
    }


def read_reviews(path: Path) -> tuple[list[tuple[str, str, int, int]], int]:
    """(user, item, unix time, line number) per review, and the number of lines read."""
    rows = []
    for n, obj in read_records(path):
        missing = [k for k in ("reviewerID", "asin", "unixReviewTime") if k not in obj]
        if missing:
            raise DataError(path, f"line {n}: missing field {missing[0]!r} (expected an Amazon review)")
        t = obj["unixReviewTime"]
        if isinstance(t, bool) or not isinstance(t, (int, str)) or not str(t).strip().isdigit():
            raise DataError(path, f"line {n}: unixReviewTime {t!r} is not a unix time")
        rows.append((str(obj["reviewerID"]), str(obj["asin"]), int(t), n))
    if not rows:
        raise DataError(path, "no reviews")
    return rows, len(rows)


def read_meta(path: Path, wanted: set[str]) -> tuple[dict[str, dict], int, int]:
    """Metadata of the wanted items (first line wins); also lines read and repeated asins."""
    meta: dict[str, dict] = {}
    lines = repeats = 0
    for n, obj in read_records(path):
        lines += 1
        if "asin" not in obj:
            raise DataError(path, f"line {n}: missing field 'asin' (expected Amazon metadata)")
        asin = str(obj["asin"])
        if asin in wanted:
            if asin in meta:
                repeats += 1
            else:
                meta[asin] = obj
    return meta, lines, repeats


def dedupe(rows: list[tuple[str, str, int, int]]) -> list[tuple[str, str, int, int]]:
    """Chronological (time, then file order); a repeated (user, item) keeps its first time."""
    seen: set[tuple[str, str]] = set()
    out = []
    for row in sorted(rows, key=lambda r: (r[2], r[3])):
        if (row[0], row[1]) not in seen:
            seen.add((row[0], row[1]))
            out.append(row)
    return out


def kcore(rows: list[tuple[str, str, int, int]], k: int) -> tuple[list[tuple[str, str, int, int]], int]:
    """Drop users and items with fewer than k interactions until every one left has k:
    removing a user can push an item below k and back, so one pass is not enough."""
    passes = 0
    while True:
        passes += 1
        users = Counter(r[0] for r in rows)
        items = Counter(r[1] for r in rows)
        kept = [r for r in rows if users[r[0]] >= k and items[r[1]] >= k]
        if len(kept) == len(rows):
            return kept, passes
        rows = kept


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _day(t: int) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%d")


def prepare_amazon(reviews: Path, meta: Path, out: Path, name: str | None = None,
                   opts: AmazonOptions = AmazonOptions()) -> dict:
    """Build the folder; return the data card (also written as X.card.json and X.card.md)."""
    reviews, meta, out = Path(reviews), Path(meta), Path(out)
    name = name or out.name
    if not name or "/" in name:
        raise DataError(out, f"bad data set name {name!r}")

    raw, n_lines = read_reviews(reviews)
    unique = dedupe(raw)
    filtered, passes = kcore(unique, opts.kcore)
    if not filtered:
        raise DataError(reviews, f"no interaction is left after {opts.kcore}-core filtering "
                                 f"({len(unique)} unique (user, item) pairs in)")

    user_ids = sorted({r[0] for r in filtered})
    item_ids = sorted({r[1] for r in filtered})
    uid = {u: i for i, u in enumerate(user_ids)}
    iid = {it: i for i, it in enumerate(item_ids)}
    sequences: list[list[int]] = [[] for _ in user_ids]
    for user, item, _, _ in filtered:  # already in (time, file order)
        sequences[uid[user]].append(iid[item])

    metadata, meta_lines, meta_repeats = read_meta(meta, set(item_ids))
    items = {str(i): item_fields(metadata.get(it), opts) for i, it in enumerate(item_ids)}
    no_meta = sum(1 for it in item_ids if it not in metadata)
    no_title = sum(1 for f in items.values() if not f["title"])

    times = [r[2] for r in filtered]
    card = {
        "name": name,
        "source": {
            "reviews": {"path": str(reviews), "sha256": _sha256(reviews)},
            "meta": {"path": str(meta), "sha256": _sha256(meta)},
        },
        "preprocessing": {
            **asdict(opts),
            "duplicates": "a repeated (user, item) pair keeps its earliest review (time, then file order)",
            "order": "each user's items by (unixReviewTime, line in the reviews file)",
            "ids": "users and items numbered 0..n-1 in sorted raw-id order; raw ids in X.user2id.json / X.item2id.json",
            "text": "HTML unescaped, tags stripped, whitespace collapsed, cut at a word boundary to the max_*_chars caps",
            "kcore_passes": passes,
        },
        "counts": {
            "review_lines": n_lines,
            "raw": {"users": len({r[0] for r in raw}), "items": len({r[1] for r in raw}), "interactions": len(raw)},
            "after_dedup": {"users": len({r[0] for r in unique}), "items": len({r[1] for r in unique}),
                            "interactions": len(unique)},
            "after_kcore": {"users": len(user_ids), "items": len(item_ids), "interactions": len(filtered)},
            "meta_lines": meta_lines,
            "meta_repeated_asins": meta_repeats,
            "items_without_meta": no_meta,
            "items_without_title": no_title,
        },
        "date_range": {"first": _day(min(times)), "last": _day(max(times))},
    }

    def dump(obj: object) -> str:
        return json.dumps(obj, ensure_ascii=False) + "\n"

    atomic_write_text(out / f"{name}.inter.json", dump({str(u): s for u, s in enumerate(sequences)}))
    atomic_write_text(out / f"{name}.item.json", dump(items))
    atomic_write_text(out / f"{name}.user2id.json", dump(uid))
    atomic_write_text(out / f"{name}.item2id.json", dump(iid))
    atomic_write_text(out / f"{name}.card.json", json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(out / f"{name}.card.md", render_card(card))
    return card


def render_card(card: dict) -> str:
    c, p = card["counts"], card["preprocessing"]
    rows = [("raw", c["raw"]), ("after dedup", c["after_dedup"]), (f"after {p['kcore']}-core", c["after_kcore"])]
    lines = [
        f"# Data card: {card['name']}",
        "",
        "Prepared by `bench data prepare amazon` from the Amazon Reviews dump.",
        "",
        f"- reviews: `{card['source']['reviews']['path']}` (sha256 {card['source']['reviews']['sha256'][:16]}...)",
        f"- meta: `{card['source']['meta']['path']}` (sha256 {card['source']['meta']['sha256'][:16]}...)",
        f"- reviews from {card['date_range']['first']} to {card['date_range']['last']} (UTC, after filtering)",
        "",
        "| stage | users | items | interactions |",
        "| --- | --- | --- | --- |",
        *[f"| {s} | {v['users']:,} | {v['items']:,} | {v['interactions']:,} |" for s, v in rows],
        "",
        f"- {p['kcore']}-core reached its fixed point after {p['kcore_passes']} passes",
        f"- items without a metadata line (kept, empty text): {c['items_without_meta']:,}",
        f"- items without a title: {c['items_without_title']:,}",
        f"- metadata lines: {c['meta_lines']:,} ({c['meta_repeated_asins']:,} repeated asins ignored)",
        f"- duplicates: {p['duplicates']}",
        f"- order: {p['order']}",
        f"- ids: {p['ids']}",
        f"- text: {p['text']} (title {p['max_title_chars']}, description {p['max_description_chars']}, "
        f"brand {p['max_brand_chars']}, categories {p['max_categories_chars']} characters)",
        "",
    ]
    return "\n".join(lines)
