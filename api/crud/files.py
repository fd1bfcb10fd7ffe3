"""Stored files: where the worker writes an experiment's file, its hash record, and lookups."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import StoredFile


@dataclass(frozen=True)
class FileRecord:
    """A file the worker wrote under the artifact dir (``path`` relative to it)."""

    kind: str
    path: str
    sha256: str
    size: int


def file_record(artifact_dir: Path, relative: str, kind: str = "model") -> FileRecord:
    """Hash a file the worker wrote at ``artifact_dir/relative`` into a FileRecord."""
    path = artifact_dir / relative
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return FileRecord(kind=kind, path=relative, sha256=h.hexdigest(), size=path.stat().st_size)


def artifact_relpath(experiment_id: int, kind: str = "model") -> str:
    """Where the worker should write an experiment's file, relative to the artifact dir."""
    suffix = {"model": "model.rpg"}.get(kind, f"{kind}.bin")
    return f"experiments/{int(experiment_id)}/{suffix}"


def get_file(session: Session, experiment_id: int, kind: str) -> StoredFile | None:
    q = select(StoredFile).where(StoredFile.experiment_id == experiment_id, StoredFile.kind == kind)
    return session.scalars(q).first()


def ids_with_file(session: Session, experiment_ids: Iterable[int], kind: str = "model") -> set[int]:
    """Which of ``experiment_ids`` have a stored file of ``kind`` (one query)."""
    ids = list(experiment_ids)
    if not ids:
        return set()
    q = select(StoredFile.experiment_id).where(
        StoredFile.experiment_id.in_(ids), StoredFile.kind == kind
    )
    return set(session.scalars(q))
