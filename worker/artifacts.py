"""The artifact store: every file of an experiment lives under ``ARTIFACT_DIR/experiments/ID/``.

Paths are keyed by the experiment id only, so a rerun (redelivery, resume, retry) writes the same
files again instead of leaving orphans. Workers on other machines share the directory (NFS, a
mounted bucket: see docs/DEPLOY.md).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from api.crud import files as stored

log = logging.getLogger(__name__)


def experiment_dir(artifact_dir: Path, experiment_id: int) -> Path:
    return Path(artifact_dir) / "experiments" / str(int(experiment_id))


def checkpoint_dir(artifact_dir: Path, experiment_id: int) -> Path:
    """Where the engine checkpoints every epoch (and resumes from)."""
    return experiment_dir(artifact_dir, experiment_id) / "checkpoints"


def save_outputs(
    artifact_dir: Path, experiment_id: int, model: Any, data: Any
) -> list[stored.FileRecord]:
    """Write the ``.rpg`` file (atomically, at its id-keyed path) and return the file records.

    ``data``: the run's :class:`rpg_core.data.Datasets` (the engine loaded them; its
    normalisation goes into the file's inference metadata). A pruned network is no longer an RPG
    network of a registered shape, so a pruning job keeps its result and histogram but no
    ``.rpg`` file (its checkpoint holds the weights). A network pruned by ``method``
    prune-global or prune-filters keeps its registered shape, with zeros: the engine marks it
    (``rpg_core.format.SPARSE_ATTR``) and its file stores those sparse (docs/FORMAT.md section
    3b), so the recorded size is the sparse file's.
    """
    from rpg_core.evaluate.predict import inference_info
    from rpg_core.format import save_compact
    from rpg_core.models import model_spec_of

    model.eval()
    files: list[stored.FileRecord] = []
    if model_spec_of(model) is not None:
        rel = stored.artifact_relpath(experiment_id, "model")
        path = Path(artifact_dir) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        save_compact(model, path, inference=inference_info(data))  # what predict needs
        files.append(stored.file_record(Path(artifact_dir), rel, kind="model"))
    return files
