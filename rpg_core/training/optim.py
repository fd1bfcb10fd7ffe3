"""The optimizer of a run: SGD with momentum (the paper's) or AdamW, and the learning-rate
factor of a heavily shared ring (``train.lr_by_ring_uses``)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

RING_LR_USES = 512  # lr_by_ring_uses: rings used more often than this lower the lr


def ring_lr_factor(model: nn.Module) -> float:
    """``min(1, sqrt(RING_LR_USES / uses))`` for the model's most-used ring (1: no ring).

    A ring element used ``uses = M / N`` times gets a gradient about as large as one generated
    weight's while the ring's norm is ``sqrt(N / M)`` of the generated weights', so behind
    batchnorm its relative step is ``sqrt(uses)`` times a plain layer's. Measured on digits,
    3 epochs, 2K ring: width 0.5 (1,400 uses) lr 0.1 gives 80%, 0.06 93%; width 1 (5,600 uses)
    lr 0.021 88%, 0.03 91%; lowering the ring's lr alone gave 70% (docs/BENCHMARKS.md).
    """
    from ..rpg.ring import Ring

    uses = [m.spec.generated / m.spec.size for m in model.modules() if isinstance(m, Ring)]
    return min(1.0, math.sqrt(RING_LR_USES / max(uses))) if uses else 1.0


def make_optimizer(model: nn.Module, hp: dict[str, Any]) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's) or AdamW, from resolved hyper-parameters."""
    params = model.parameters()
    if hp["optimizer"] == "adamw":
        return torch.optim.AdamW(
            params, lr=hp["lr"], betas=(hp["momentum"], 0.999), weight_decay=hp["weight_decay"]
        )
    return torch.optim.SGD(
        params, lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"]
    )
