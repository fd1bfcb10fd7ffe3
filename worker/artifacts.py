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

from api import crud

log = logging.getLogger(__name__)


def experiment_dir(artifact_dir: Path, experiment_id: int) -> Path:
    return Path(artifact_dir) / "experiments" / str(int(experiment_id))


def checkpoint_dir(artifact_dir: Path, experiment_id: int) -> Path:
    """Where the engine checkpoints every epoch (and resumes from)."""
    return experiment_dir(artifact_dir, experiment_id) / "checkpoints"


@dataclass(frozen=True)
class Finished:
    """What the end of a successful run adds to its result and file list."""

    files: list[crud.FileRecord]
    similarity: dict[str, Any] | None


def rebuild_model(spec: dict[str, Any], ckpt_dir: Path, data_root: Path | None) -> tuple[Any, Any]:
    """The trained model (from the last checkpoint) and the datasets it was trained on.

    The engine's TrainResult does not carry the model, so it is rebuilt from the checkpoint the
    engine wrote after the last epoch (same spec, same seeds: the same architecture and rings).
    """
    from rpg_core.checkpoint import load_checkpoint
    from rpg_core.data import load_datasets
    from rpg_core.exceptions import RPGTrainingError
    from rpg_core.models import create_model
    from rpg_core.spec import parse_spec

    parsed = parse_spec(spec)
    data = load_datasets(parsed.data, data_root=data_root)
    model = create_model(parsed, num_classes=data.num_classes, in_channels=data.in_channels)
    ckpt = load_checkpoint(ckpt_dir)
    if ckpt is None:
        raise RPGTrainingError(f"no checkpoint in {ckpt_dir} to rebuild the trained model from")
    model.load_state_dict(ckpt.prefixed("model/"), strict=True)
    model.eval()
    return model, data


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
    spec: dict[str, Any],
    data_root: Path | None,
    images: int,
) -> Finished:
    """Write the ``.rpg`` file (atomically, at its id-keyed path) and compute the histogram."""
    from rpg_core.compact import save_compact

    model, data = rebuild_model(spec, checkpoint_dir(artifact_dir, experiment_id), data_root)
    rel = crud.artifact_relpath(experiment_id, "model")
    path = Path(artifact_dir) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    save_compact(model, path)
    record = crud.file_record(Path(artifact_dir), rel, kind="model")
    return Finished(files=[record], similarity=similarity_of(model, data, images))
