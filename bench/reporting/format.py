"""How the report writes numbers and tables (shared by its sections)."""

from __future__ import annotations

from typing import Any

import pandas as pd


def md_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table (cells already formatted as strings)."""
    head = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def num(v: Any, digits: int = 4) -> str:
    return "" if v is None or pd.isna(v) else f"{v:.{digits}f}"


def p_text(v: Any) -> str:
    """A p-value: scientific below .001, else three decimals."""
    return "" if v is None or pd.isna(v) else (f"{v:.2e}" if v < 0.001 else f"{v:.3f}")
