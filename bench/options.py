"""Explicit, validated options: every component declares a dataclass of its settings."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar, get_type_hints

from bench.errors import BenchError

T = TypeVar("T")


def make_options(cls: type[T], values: dict[str, Any], owner: str) -> T:
    """Build `cls` from `values`, converting strings (from the CLI) to the declared types."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise BenchError(f"{owner}: unknown option {key!r} (known: {', '.join(fields)})")
        kwargs[key] = _convert(value, hints[key], f"{owner}.{key}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise BenchError(f"{owner}: {e}") from None


def _convert(value: Any, hint: Any, where: str) -> Any:
    if not isinstance(value, str) or hint is str:
        return value
    try:
        if hint is bool:
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if hint in (int, float):
            return hint(value)
    except ValueError:
        raise BenchError(f"{where}: {value!r} is not a valid {getattr(hint, '__name__', hint)}") from None
    return value


def check(condition: bool, message: str) -> None:
    """For __post_init__ validation: raises ValueError, which make_options reports."""
    if not condition:
        raise ValueError(message)
