"""What every task is: :class:`Task`, the interface the training loop calls (see
:mod:`rpg_core.tasks`), and the helpers the dense tasks share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..catalog.tasks import TaskInfo

Targets = Any  # a tensor (classification) or a dict of tensors (dense tasks)


class Task:
    """A task's loss and metrics; one subclass per task in :data:`rpg_core.catalog.tasks.TASKS`."""

    info: TaskInfo

    def targets_to(self, targets: Targets, device: torch.device) -> Targets:
        """``targets`` on ``device`` (a tensor, or every tensor of a dict)."""
        if isinstance(targets, Mapping):
            return {k: v.to(device) for k, v in targets.items()}
        return targets.to(device)

    def loss(self, outputs: Any, targets: Targets, *, label_smoothing: float = 0.0) -> torch.Tensor:
        """The scalar to back-propagate (float32)."""
        raise NotImplementedError

    def batch_size(self, targets: Targets) -> int:
        if isinstance(targets, Mapping):
            return int(next(iter(targets.values())).shape[0])
        return len(targets)

    def train_sums(self, outputs: Any, targets: Targets) -> dict[str, float]:
        """Running sums of the training metric over a batch (none for dense tasks)."""
        return {}

    def eval_sums(self, outputs: Any, targets: Targets, *, top5: bool = False) -> dict[str, float]:
        """Additive sums over a validation batch: ``loss_sum`` (the loss times the batch) and
        what the metrics need. Call under ``torch.no_grad()``."""
        raise NotImplementedError

    def finish(self, sums: Mapping[str, float], n: int, *, top5: bool = False) -> dict[str, float]:
        """``{"val_loss": .., "val_<key>": ..}`` from a pass's summed ``eval_sums`` over ``n``
        images (zeros when empty)."""
        raise NotImplementedError

    def samples(
        self, x_raw_uint8: Any, outputs: Any, targets: Targets, k: int = 3
    ) -> list[dict[str, Any]]:
        """Pictures of the first ``k`` images of a batch for the run page (none by default)."""
        return []

    def baseline(self, train: Targets, val: Targets) -> dict[str, float]:
        """``{"val_<key>": ..}``: the metrics on ``val`` of a constant prediction made from the
        training targets (the mean pose, the per-pixel mean maps): what a network that learnt
        nothing from its inputs scores (the dense tasks' "chance"; none for classification,
        whose chance the guard rails compute from the labels)."""
        return {}


def stacks_of(outputs: Any) -> list[Mapping[str, torch.Tensor]]:
    """The per-stack output dicts of a stacked model (one dict alone is one stack)."""
    if isinstance(outputs, Mapping):
        return [outputs]
    return list(outputs)


def rounded(v: float) -> float:
    return round(float(v), 2)


def as_numpy(images: Any) -> Any:
    """A tensor (or array-like) as a numpy array on the host."""
    import numpy as np

    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    return np.asarray(images)
