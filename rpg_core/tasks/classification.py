"""Classification: cross-entropy on logits, top-1 (and top-5) accuracy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from ..catalog.tasks import task_info
from .base import Targets, Task


class ClassificationTask(Task):
    """Cross-entropy on logits ``[B, K]``; top-1 (and optionally top-5) accuracy. Numerically
    what :mod:`rpg_core.training.loop` computed before the tasks."""

    info = task_info("classification")

    def loss(self, outputs: Any, targets: Targets, *, label_smoothing: float = 0.0) -> torch.Tensor:
        y = targets.to(outputs.device)
        return F.cross_entropy(outputs.float(), y, label_smoothing=label_smoothing)

    def train_sums(self, outputs: Any, targets: Targets) -> dict[str, float]:
        y = targets.to(outputs.device)
        return {"correct": float((outputs.argmax(1) == y).sum().item())}

    def eval_sums(self, outputs: Any, targets: Targets, *, top5: bool = False) -> dict[str, float]:
        logits = outputs.float()
        y = targets.to(logits.device)
        sums = {
            "loss_sum": float(F.cross_entropy(logits, y, reduction="sum").item()),
            "correct": float((logits.argmax(1) == y).sum().item()),
        }
        if top5:
            top = logits.topk(5, dim=1).indices
            sums["top5"] = float((top == y[:, None]).any(1).sum().item())
        return sums

    def finish(self, sums: Mapping[str, float], n: int, *, top5: bool = False) -> dict[str, float]:
        out = {
            "val_loss": sums.get("loss_sum", 0.0) / max(n, 1),
            "val_acc": sums.get("correct", 0.0) / max(n, 1),
        }
        if top5:
            out["val_top5"] = sums.get("top5", 0.0) / max(n, 1)
        return out
