"""The artifact store: every file of an experiment lives under ``ARTIFACT_DIR/experiments/ID/``.

Paths are keyed by the experiment id only, so a rerun (redelivery, resume, retry) writes the same
files again instead of leaving orphans. Workers on other machines share the directory (NFS, a
mounted bucket: see docs/DEPLOY.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from api.crud import files as stored

log = logging.getLogger(__name__)


def experiment_dir(artifact_dir: Path, experiment_id: int) -> Path:
    return Path(artifact_dir) / "experiments" / str(int(experiment_id))


def checkpoint_dir(artifact_dir: Path, experiment_id: int) -> Path:
    """Where the engine checkpoints every epoch (and resumes from)."""
    return experiment_dir(artifact_dir, experiment_id) / "checkpoints"


@dataclass(frozen=True)
class Finished:
    """What the end of a successful run adds to its result and file list."""

    files: list[stored.FileRecord]
    similarity: dict[str, Any] | None


def similarity_of(model: Any, data: Any, images: int) -> dict[str, Any] | None:
    """The layer3 feature-similarity histogram on validation images (None if not applicable)."""
    from rpg_core.analysis import feature_similarity
    from rpg_core.data import BatchLoader
    from rpg_core.exceptions import RPGError

    loader = BatchLoader(data, "val", batch_size=min(images, 256))
    try:
        hist = feature_similarity(model, loader.epoch(0), layer="layer3", max_images=images)
    except RPGError as err:  # e.g. an architecture without a "layer3"
        log.info("no similarity histogram: %s", err)
        return None
    return hist.as_dict()


def save_outputs(
    artifact_dir: Path,
    experiment_id: int,
    model: Any,
    spec: dict[str, Any],
    data_root: Path | None,
    images: int,
) -> Finished:
    """Write the ``.rpg`` file (atomically, at its id-keyed path) and compute the histogram.

    A pruned network is no longer an RPG network of a registered shape, so a pruning job keeps
    its result and histogram but no ``.rpg`` file (its checkpoint holds the weights).
    """
    from rpg_core.compact import save_compact
    from rpg_core.data import load_datasets
    from rpg_core.models import model_spec_of
    from rpg_core.predict import inference_info
    from rpg_core.spec import parse_spec

    model.eval()
    data = load_datasets(parse_spec(spec).data, data_root=data_root)
    files: list[stored.FileRecord] = []
    if model_spec_of(model) is not None:
        rel = stored.artifact_relpath(experiment_id, "model")
        path = Path(artifact_dir) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        save_compact(model, path, inference=inference_info(data))  # what predict needs
        files.append(stored.file_record(Path(artifact_dir), rel, kind="model"))
    return Finished(files=files, similarity=similarity_of(model, data, images))
