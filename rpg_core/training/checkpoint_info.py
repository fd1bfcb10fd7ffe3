"""What a training checkpoint holds, read from its header alone (no tensor is loaded, torch is
not imported): how many epochs it completed. ``rpg serve`` uses it to say where each run that was
training when the service stopped resumes from.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "last.safetensors"  # the file in a checkpoint directory
META_KEY = "rpg_checkpoint"  # the safetensors metadata key of the JSON header


def completed_epochs(directory: str | Path) -> int | None:
    """The epochs completed by the checkpoint in ``directory``; None when there is none (or it
    cannot be read: the run then starts again from the beginning)."""
    from safetensors import SafetensorError, safe_open

    path = Path(directory) / CHECKPOINT_NAME
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="numpy") as f:
            header = json.loads((f.metadata() or {})[META_KEY])
        return int(header["epoch"])
    except (SafetensorError, OSError, KeyError, TypeError, ValueError) as err:
        log.warning("%s: unreadable checkpoint header: %s", path, err)
        return None
