"""The data root and the one rule of every data path: nothing leaves the root (no absolute
paths, no ``..``, no symlink resolving outside it). No torch."""

from __future__ import annotations

import os
from pathlib import Path

from ..exceptions import RPGDataError


def default_data_root() -> Path:
    """``$RPG_DATA_ROOT``, or ``./data``."""
    return Path(os.environ.get("RPG_DATA_ROOT") or "data")


def resolve_under(root: str | Path, *parts: str) -> Path:
    """``root/parts...``, refusing anything that would leave ``root`` (``..``, absolute paths,
    symlinks resolving outside it). Errors name the path as given (``root/parts``), never
    where a symlink leads."""
    shown = Path(root)  # the data root as configured, not resolved
    base = shown.resolve()
    for part in parts:
        p = Path(part)
        if p.is_absolute() or ".." in p.parts or part.strip() == "":
            raise RPGDataError(
                f"data path {part!r} is not allowed: use a plain name inside the data root {shown}"
            )
    target = base.joinpath(*parts).resolve()
    if not target.is_relative_to(base):
        raise RPGDataError(
            f"{shown.joinpath(*parts)} is a symlink (or inside one) that leads outside the data "
            f"root {shown}; copy the data into the data root instead of linking it"
        )
    return target
