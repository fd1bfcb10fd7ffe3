"""Learning-rate schedules, stepped once per optimisation step.

Every schedule is a pure function of the step, so a resumed run only needs the step count
(``LambdaLR.last_epoch``, saved in checkpoints) to continue exactly where it stopped.

- ``cosine``: linear warm-up from 0 over ``warmup`` steps, then half a cosine to 0 at ``total``.
- ``onecycle``: cosine warm-up from ``lr / 25`` over ``warmup`` steps (30% of the run when no
  warm-up is given), then cosine to 0 (Smith's one-cycle, without momentum cycling).
- ``step``: linear warm-up, then ``gamma`` to the power of the milestones passed (the paper's).
- ``constant``: linear warm-up, then flat.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

ONECYCLE_START = 1 / 25  # one-cycle's initial lr, as a fraction of the peak (torch's default)
ONECYCLE_WARMUP = 0.3  # one-cycle's warm-up fraction when none is given (torch's default)


def lr_factor(
    kind: str,
    total: int,
    warmup: int,
    milestones: Sequence[int] = (),
    gamma: float = 0.1,
) -> Callable[[int], float]:
    """``step -> lr / peak lr`` for a run of ``total`` steps (milestones in steps)."""
    total = max(total, 1)
    if kind == "onecycle" and warmup <= 0:
        warmup = max(1, round(ONECYCLE_WARMUP * total))
    warmup = min(max(warmup, 0), total - 1)

    def warm(step: int) -> float:
        if kind == "onecycle":
            t = step / warmup
            return ONECYCLE_START + (1 - ONECYCLE_START) * (1 - math.cos(math.pi * t)) / 2
        return (step + 1) / (warmup + 1)

    def factor(step: int) -> float:
        if step < warmup:
            return warm(step)
        if kind in ("cosine", "onecycle"):
            t = (step - warmup) / max(total - warmup, 1)
            return 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
        if kind == "step":
            return float(gamma ** sum(1 for m in milestones if step >= m))
        if kind == "constant":
            return 1.0
        raise ValueError(f"unknown schedule {kind!r}")

    return factor


def make_scheduler(
    optimizer: torch.optim.Optimizer, hp: dict[str, Any], steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """The per-step scheduler of resolved hyper-parameters ``hp`` (see ``resolve_train``)."""
    fn = lr_factor(
        hp["schedule"],
        total=hp["epochs"] * steps_per_epoch,
        warmup=round(hp["warmup_epochs"] * steps_per_epoch),
        milestones=[m * steps_per_epoch for m in hp["milestones"]],
        gamma=hp["gamma"],
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
