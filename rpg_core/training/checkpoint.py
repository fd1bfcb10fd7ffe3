"""Training checkpoints: one safetensors file with a JSON header, written atomically.

Tensors (model state, optimizer state, RNG states) go in the safetensors body under prefixed
names (``model/``, ``optim/<param index>/<key>``, ``rng/``); everything else (epoch, history, the
spec, optimizer hyper-parameters, scheduler state) goes, as JSON, in the file's metadata under
``rpg_checkpoint``. Nothing is pickled; loading never runs code. The file goes through the one
safetensors codec (:mod:`rpg_core.format.safetensors_codec`: written by the library, atomically and
fsynced) and is read after the ``.rpg`` container's strict checks
(:func:`rpg_core.fileformat.container.read_container`).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..exceptions import RPGFormatError
from ..format.container import ContainerError, read_container
from ..format.safetensors_codec import SafetensorError, write_atomic
from .checkpoint_info import CHECKPOINT_NAME, META_KEY

log = logging.getLogger(__name__)

FORMAT = "rpg-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns: tensors by prefixed name, and the JSON header."""

    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def epoch(self) -> int:
        """Epochs completed when it was written."""
        return int(self.meta["epoch"])

    def prefixed(self, prefix: str) -> dict[str, torch.Tensor]:
        n = len(prefix)
        return {k[n:]: v for k, v in self.tensors.items() if k.startswith(prefix)}


def checkpoint_path(directory: str | Path) -> Path:
    return Path(directory) / CHECKPOINT_NAME


# --- optimizer and scheduler state <-> tensors + JSON -------------------------------------------
def _optimizer_parts(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for pid, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{pid}/{key}"] = value
            else:
                plain.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "plain_state": plain}


def _optimizer_state(ckpt: Checkpoint) -> dict[str, Any]:
    meta = ckpt.meta["optimizer"]
    state: dict[int, dict[str, Any]] = {}
    for name, value in ckpt.prefixed("optim/").items():
        pid, key = name.split("/", 1)
        state.setdefault(int(pid), {})[key] = value
    for pid, values in meta["plain_state"].items():
        state.setdefault(int(pid), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def _scheduler_json(sched: Any) -> dict[str, Any]:
    sd = dict(sched.state_dict())
    if isinstance(sd.get("milestones"), Counter):
        sd["milestones"] = sorted(sd["milestones"].items())
    return sd


def _scheduler_state(meta: dict[str, Any]) -> dict[str, Any]:
    sd = dict(meta)
    if isinstance(sd.get("milestones"), list):
        sd["milestones"] = Counter({int(k): int(v) for k, v in sd["milestones"]})
    return sd


# --- save / load --------------------------------------------------------------------------------
def save_checkpoint(
    directory: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    epoch: int,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write ``directory/last.safetensors`` atomically (:func:`~rpg_core.format.safetensors_codec.
    write_atomic`: temp file, fsync, rename, fsync of the directory).

    ``meta`` (JSON-serialisable: history, spec, ...) is stored in the header beside the state.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
    opt_tensors, opt_meta = _optimizer_parts(optimizer)
    tensors.update(opt_tensors)
    tensors["rng/torch_cpu"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = state
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "epoch": epoch,
        "optimizer": opt_meta,
        "scheduler": _scheduler_json(scheduler),
        **(meta or {}),
    }
    metadata = {META_KEY: json.dumps(header)}
    target = write_atomic(checkpoint_path(d), lambda tmp: save_file(tensors, tmp, metadata))
    log.info("checkpoint: epoch %d -> %s", epoch, target)
    return target


def load_checkpoint(directory: str | Path) -> Checkpoint | None:
    """The checkpoint in ``directory``, or None when there is none."""
    path = checkpoint_path(directory)
    if not path.is_file():
        return None
    try:
        read_container(path)  # the strict checks, before the library reads it
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = json.loads((f.metadata() or {})[META_KEY])
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open API
    except (ContainerError, SafetensorError, KeyError, json.JSONDecodeError, OSError) as err:
        raise RPGFormatError(f"{path} is not a valid RPG checkpoint: {err}") from None
    if header.get("format") != FORMAT or header.get("format_version") != FORMAT_VERSION:
        raise RPGFormatError(
            f"{path}: unsupported checkpoint format {header.get('format')!r} "
            f"v{header.get('format_version')}; expected {FORMAT} v{FORMAT_VERSION}"
        )
    return Checkpoint(tensors=tensors, meta=header)


def restore_checkpoint(
    ckpt: Checkpoint,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
) -> bool:
    """Load the model, optimizer, scheduler and RNG states of ``ckpt`` in place.

    Returns False when the scheduler's state was not loaded: a checkpoint written before the
    per-step schedules holds an epoch-based ``MultiStepLR``, which the caller fast-forwards.
    """
    model.load_state_dict(ckpt.prefixed("model/"), strict=True)
    optimizer.load_state_dict(_optimizer_state(ckpt))
    state = _scheduler_state(ckpt.meta["scheduler"])
    restored = "lr_lambdas" in state or not hasattr(scheduler, "lr_lambdas")
    if restored:
        scheduler.load_state_dict(state)
    torch.set_rng_state(ckpt.tensors["rng/torch_cpu"])
    cuda = ckpt.prefixed("rng/cuda/")
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([cuda[str(i)] for i in range(len(cuda))])
    return restored
