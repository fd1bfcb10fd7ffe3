"""Numbers a person reads: parameter counts and the parameter count a fit predicts, with no
digits past what is meaningful (one formatter for the dashboard's cells and hovers, the API's
strings and the command line).

A prediction more than :data:`OUT_OF_REACH` times beyond the largest run is not one: it is said
as ``beyond 100x the largest run``, never as its digits (a law fitted to 3-epoch runs can
"predict" 3e61 parameters for 95%).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["OUT_OF_REACH", "params_needed_text", "params_text"]

OUT_OF_REACH = 100.0  # a prediction this many times beyond the largest run is not one
_UNITS = (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3))


def params_text(n: float) -> str:
    """A parameter count in three significant digits: ``152k``, ``11.2M``, ``1.5G``; counts
    past a thousand T in powers of ten (``3e+61``); not a number: ``?``."""
    if not isinstance(n, int | float) or not math.isfinite(n):
        return "?"
    if abs(n) >= 1e15:
        return f"{n:.0e}"
    for unit, size in _UNITS:
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.3g}"


def params_needed_text(v: float | None, sizes: Sequence[float]) -> str | None:
    """The parameter count a fit predicts for a target, saying when (and how far) it
    extrapolates from the runs' ``sizes``; beyond :data:`OUT_OF_REACH` times the largest run it
    says so, without the number. ``None`` when there is no prediction."""
    if v is None:
        return None
    if not isinstance(v, int | float) or not math.isfinite(v):
        return f"beyond {OUT_OF_REACH:.0f}× the largest run" if sizes else "out of reach"
    if not sizes:
        return params_text(v)
    lo, hi = min(sizes), max(sizes)
    if v > hi:
        factor = v / hi
        if factor > OUT_OF_REACH:
            return (
                f"beyond {OUT_OF_REACH:.0f}× the largest run ({params_text(hi)}): out of reach "
                f"of this fit"
            )
        return f"{params_text(v)} (extrapolated: {factor:.1f}× the largest run)"
    if v < lo:
        return f"{params_text(v)} (below the smallest run, {params_text(lo)}: extrapolated)"
    return params_text(v)
