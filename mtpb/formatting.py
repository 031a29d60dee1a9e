"""Figures as text, written alike in the HTML report, its charts and the terminal summary."""
from __future__ import annotations

import math

MISSING = "—"  # a figure that does not exist (no size recorded, no pass@k for this n)


def fmt_params(n: int | None) -> str:
    if n is None:
        return MISSING
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


def fmt_pct(x) -> str:
    return MISSING if _missing(x) else f"{x:.1f}"


def fmt_num(x) -> str:
    if _missing(x):
        return MISSING
    return f"{x:g}" if isinstance(x, float) else str(x)


def _missing(x) -> bool:
    # pandas hands a missing figure over as NaN, a run's manifest as None.
    return x is None or (isinstance(x, float) and math.isnan(x))


def short_model(model: str) -> str:
    """A model's name for tables and axes: the last part of a checkpoint path or hub id
    ("/ckpts/codegen-350M-mono/" -> "codegen-350M-mono"); the full name goes in a tooltip."""
    parts = [p for p in str(model).replace("\\", "/").split("/") if p]
    return parts[-1] if parts else str(model)
