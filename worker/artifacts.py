"""An experiment's files: written here, then put in the artifact store (:mod:`api.storage`).

Every file of an experiment has the key ``experiments/ID/...``, the same in every store: a
rerun (redelivery, resume, retry) writes the same keys again instead of leaving orphans. The
engine writes its checkpoints into this host's artifact directory
(``ARTIFACT_DIR/experiments/ID/checkpoints/``); with an S3 store (``RPG_ARTIFACT_URL=s3://...``)
:class:`CheckpointUpload` puts each one in the store after the engine wrote it, and
:func:`fetch_checkpoint` brings the store's back before a new attempt resumes, on whatever host
it runs. The ``.rpg`` file is uploaded whole before the run is recorded succeeded (upload, then
record: no half-written file is ever listed). A store outage raises
:class:`api.storage.StoreUnavailable`: the attempt fails, and the run is queued again.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from api.crud import files as stored
from api.storage import ArtifactStore, LocalStore
from rpg_core.training.checkpoint_info import CHECKPOINT_NAME, completed_epochs

log = logging.getLogger(__name__)


def experiment_dir(artifact_dir: Path, experiment_id: int) -> Path:
    return Path(artifact_dir) / "experiments" / str(int(experiment_id))


def checkpoint_dir(artifact_dir: Path, experiment_id: int) -> Path:
    """Where the engine checkpoints every epoch (and resumes from), on this host."""
    return experiment_dir(artifact_dir, experiment_id) / "checkpoints"


def checkpoint_key(experiment_id: int) -> str:
    """The store's key of an experiment's latest checkpoint."""
    return f"experiments/{int(experiment_id)}/checkpoints/{CHECKPOINT_NAME}"


class CheckpointUpload:
    """Engine callback: after each epoch's checkpoint is written (``on_epoch_end`` comes after
    the engine's save), put it in the store. A failure raises: the attempt ends, the run is
    queued again and resumes from the store's last good checkpoint."""

    def __init__(self, store: ArtifactStore, artifact_dir: Path, experiment_id: int) -> None:
        self.store = store
        self.path = checkpoint_dir(artifact_dir, experiment_id) / CHECKPOINT_NAME
        self.key = checkpoint_key(experiment_id)

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        if self.store.remote and self.path.is_file():
            self.store.put_file(self.key, self.path)


def fetch_checkpoint(store: ArtifactStore, artifact_dir: Path, experiment_id: int) -> int | None:
    """Before an attempt: bring the store's checkpoint here when it is further along than this
    host's (a fresh host has none; this host's may be older, or newer when its upload failed).
    Returns the epochs of the checkpoint the engine will resume from (None: none)."""
    local = checkpoint_dir(artifact_dir, experiment_id)
    here = completed_epochs(local)
    if not store.remote or not store.exists(checkpoint_key(experiment_id)):
        return here
    local.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=local, prefix=".fetch-") as tmp:
        store.get_file(checkpoint_key(experiment_id), Path(tmp) / CHECKPOINT_NAME)
        there = completed_epochs(tmp)
        if there is not None and (here is None or there > here):
            (Path(tmp) / CHECKPOINT_NAME).replace(local / CHECKPOINT_NAME)
            log.info(
                "experiment %d: resuming from the store's checkpoint (epoch %d; here: %s)",
                experiment_id, there, here,
            )  # fmt: skip
            return there
    return here


def save_outputs(
    artifact_dir: Path,
    experiment_id: int,
    model: Any,
    data: Any,
    store: ArtifactStore | None = None,
) -> list[stored.FileRecord]:
    """Write the ``.rpg`` file (atomically, at its id-keyed path), put it in ``store`` (default:
    the directory itself) and return the file records, for the caller to record after.

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

    store = store if store is not None else LocalStore(Path(artifact_dir))
    model.eval()
    files: list[stored.FileRecord] = []
    if model_spec_of(model) is not None:
        rel = stored.artifact_relpath(experiment_id, "model")
        path = Path(artifact_dir) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        save_compact(model, path, inference=inference_info(data))  # what predict needs
        record = stored.file_record(Path(artifact_dir), rel, kind="model")
        store.put_file(rel, path)  # whole, before the caller records it
        if store.remote:
            path.unlink(missing_ok=True)  # the store holds it; this host's copy was scratch
        files.append(record)
    return files
