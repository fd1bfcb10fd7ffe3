"""What a training checkpoint's saved spec means for a run: the spec parsed again (rings of
generator 1 rebuilt with it), whether it is the run's spec, and the model it holds."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch import nn

from ..exceptions import RPGConfigError
from ..models import create_model
from ..spec import ExperimentSpec, parse_spec
from .checkpoint import Checkpoint, load_checkpoint

log = logging.getLogger(__name__)


def saved_spec(saved: Any) -> ExperimentSpec:
    """A checkpoint's spec, parsed again (newer fields take their defaults), except that rings
    saved before ``rpg.generator`` existed were made by generator 1 and are rebuilt with it."""
    if isinstance(saved, dict) and isinstance(saved.get("rpg"), dict):
        if "generator" not in saved["rpg"]:
            saved = {**saved, "rpg": {**saved["rpg"], "generator": 1}}
    return parse_spec(saved)


def _same_spec(saved: Any, spec: ExperimentSpec) -> bool:
    """Whether a checkpoint's saved spec is ``spec`` (on any number of devices: a data-parallel
    run trains as a 1-device run does, so either resumes the other's checkpoint)."""
    try:
        parsed = saved_spec(saved)
    except RPGConfigError:
        return False
    train = parsed.train.model_copy(update={"devices": spec.train.devices})
    return parsed.model_copy(update={"train": train}) == spec


def _for_checkpoint(spec: ExperimentSpec, ckpt: Checkpoint | None) -> ExperimentSpec:
    """``spec``, with the generator of the checkpoint it resumes when that predates generator 2."""
    if ckpt is None or spec.rpg is None:
        return spec
    try:
        saved = saved_spec(ckpt.meta.get("spec"))
    except RPGConfigError:
        return spec  # _resume names the mismatch
    if saved.rpg is None or saved.rpg.generator == spec.rpg.generator:
        return spec
    if saved.model_copy(update={"rpg": spec.rpg}) != spec:
        return spec
    log.info("resuming rings made by generator %d", saved.rpg.generator)
    return spec.model_copy(update={"rpg": saved.rpg})


def load_trained_model(checkpoint_dir: str | Path) -> nn.Module:
    """The model of the checkpoint in ``checkpoint_dir``, rebuilt from its spec (CPU, eval)."""
    ckpt = load_checkpoint(checkpoint_dir)
    if ckpt is None:
        raise RPGConfigError(f"no checkpoint in {checkpoint_dir}")
    spec = saved_spec(ckpt.meta["spec"])
    model = create_model(
        spec, num_classes=ckpt.meta["num_classes"], in_channels=ckpt.meta["in_channels"]
    )
    model.load_state_dict(ckpt.prefixed("model/"), strict=True)
    return model.eval()
