"""What every `bench` command shares: one-line errors for bad input, and parsing of the
options several commands take."""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable

import click

from bench.errors import BenchError


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn BenchError into a one-line message and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BenchError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)

    return wrapper


def parse_sets(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in values:
        key, eq, value = item.partition("=")
        if not eq:
            raise BenchError(f"--set {item!r}: expected SECTION.NAME=VALUE")
        out[key.strip()] = value.strip()
    return out


def parse_seeds(value: str) -> list[int]:
    try:
        seeds = [int(s) for s in value.split(",") if s.strip()]
    except ValueError:
        raise BenchError(f"--seeds {value!r}: expected a comma list of integers, e.g. 0,1,2") from None
    if not seeds:
        raise BenchError("--seeds: empty list")
    return seeds
