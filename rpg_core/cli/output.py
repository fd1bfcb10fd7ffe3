"""The JSON the ``rpg`` commands print and write: strict JSON, which any parser reads.

NaN and infinities (an adjusted R^2 of a 3-point fit, a metric that was not defined) are written
as ``null``; ``json.dumps(..., allow_nan=False)`` then guarantees that no ``NaN`` token is ever
written, whatever a caller passes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..training.result import finite


def to_json(data: Any, *, indent: int | None = 2) -> str:
    """``data`` as strict JSON text (NaN and infinities as null; Paths and the like as text)."""
    return json.dumps(finite(data), indent=indent, default=str, allow_nan=False)


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` to ``path`` as strict JSON (see :func:`to_json`), ending with a newline."""
    path.write_text(to_json(data) + "\n", encoding="utf-8")
