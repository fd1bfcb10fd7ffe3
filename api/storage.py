"""The artifact store: files are addressed by their stored relative path, never a request value."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)


def resolve_inside(artifact_dir: Path, relative: str) -> Path | None:
    """``artifact_dir/relative`` resolved, or None when it would leave the artifact dir."""
    root = artifact_dir.resolve()
    if not relative or "\x00" in relative or Path(relative).is_absolute():
        return None
    path = (root / relative).resolve()
    return path if path.is_relative_to(root) and path != root else None


def remove_files(artifact_dir: Path, relatives: Iterable[str]) -> None:
    """Delete stored files (and their now-empty experiment folder); missing ones are ignored."""
    for rel in relatives:
        path = resolve_inside(artifact_dir, rel)
        if path is None:
            log.warning("not removing %r: outside the artifact dir", rel)
            continue
        try:
            path.unlink(missing_ok=True)
            if path.parent != artifact_dir.resolve() and not any(path.parent.iterdir()):
                path.parent.rmdir()
        except OSError as err:
            log.warning("could not remove %s: %s", path, err)
