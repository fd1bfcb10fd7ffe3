"""Global unstructured magnitude pruning of a plain network to a budget (``method:
prune-global``, issue 24; Han et al. 2015, with the field's library: ``torch.nn.utils.prune``).

The backbone (every conv weight except the stem: :func:`rpg_core.rpg.params.count_params`'s
``backbone``) is pruned as one pool by ``prune.global_unstructured`` with ``prune.L1Unstructured``
(the smallest magnitudes anywhere in it go first), in ``rounds``: round ``r`` of ``R`` keeps
``round(dense * (budget / dense) ** (r / R))`` weights (a geometric schedule; the last round
keeps exactly ``budget``), and each round is followed by ``finetune`` (the masks stay on, so the
pruned weights stay zero while the others learn). Then ``prune.remove`` makes the weights plain
tensors with zeros in them, and the network's parameters are counted as its non-zero backbone
weights (:func:`pruned_params`).

Unlike :mod:`rpg_core.training.pruning` (structured: whole ``conv1`` filters of RPG networks,
the paper's Appendix A), this saves no multiply-accumulates on dense hardware; it is the
"sparse network of the same parameter count" baseline of the paper's Fig. 1 (right).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from ..exceptions import RPGConfigError
from ..rpg.params import ParamCount, count_params
from ..rpg.rpgify import GENERATED_TYPES, rings
from ..stopping import StopCheck, check_stop

log = logging.getLogger(__name__)

__all__ = [
    "GlobalPruneReport",
    "backbone_weights",
    "nonzero_backbone",
    "positive_zeros",
    "prune_global",
    "pruned_params",
    "round_targets",
]


@dataclass(frozen=True)
class GlobalPruneReport:
    """What pruning did: the budget, the dense backbone and each round's kept weights."""

    budget: int
    dense_backbone: int
    rounds: tuple[int, ...]  # backbone weights kept after each round
    nonzero_backbone: int  # after the last round, fine-tuning and prune.remove
    round_metrics: tuple[dict[str, Any], ...] = field(default_factory=tuple)  # from finetune

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": "prune-global",
            "budget": self.budget,
            "dense_backbone": self.dense_backbone,
            "kept_per_round": list(self.rounds),
            "nonzero_backbone": self.nonzero_backbone,
            "sparsity": 1 - self.nonzero_backbone / self.dense_backbone,
            "round_metrics": [dict(m) for m in self.round_metrics],
        }


def backbone_weights(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """The ``(module, "weight")`` pairs of the backbone: every conv weight except the first
    conv's (the stem), as :func:`count_params` counts a plain network's backbone."""
    convs = [m for m in model.modules() if isinstance(m, GENERATED_TYPES)]
    return [(m, "weight") for m in convs[1:]]


def nonzero_backbone(model: nn.Module) -> int:
    """The backbone weights that are not zero (through a pruning mask, if one is on)."""
    return sum(int(getattr(m, name).count_nonzero()) for m, name in backbone_weights(model))


def round_targets(dense: int, budget: int, rounds: int) -> list[int]:
    """The weights kept after each of ``rounds`` rounds: geometric from ``dense`` to ``budget``
    (non-increasing; the last is ``budget``)."""
    if rounds < 1:
        raise RPGConfigError(f"method.rounds must be >= 1, got {rounds}")
    ratio = budget / dense
    out = [max(budget, round(dense * ratio ** (r / rounds))) for r in range(1, rounds)]
    return [*out, budget]


def prune_global(
    model: nn.Module,
    budget: int,
    *,
    rounds: int = 3,
    finetune: Callable[[nn.Module, int], dict[str, Any] | None] | None = None,
    should_stop: StopCheck | None = None,
) -> GlobalPruneReport:
    """Prune ``model``'s backbone in place to ``budget`` non-zero weights (see the module).

    ``finetune(model, round)``, when given, runs after each round with the masks on and may
    return the round's metrics (kept in the report). Raises RPGConfigError naming
    ``method.budget`` when the budget is not in ``1..dense backbone``, and for an RPG network
    (whose backbone is its ring: prune the plain network)."""
    if rings(model):
        raise RPGConfigError(
            "method prune-global prunes a plain network; this one is generated from rings "
            "(use method rpg, or omit rpg)"
        )
    params = backbone_weights(model)
    if not params:
        raise RPGConfigError("method prune-global: the network has no backbone convs to prune")
    dense = sum(getattr(m, name).numel() for m, name in params)
    if isinstance(budget, bool) or not isinstance(budget, int) or not 1 <= budget <= dense:
        raise RPGConfigError(
            f"method.budget: prune-global keeps 1..{dense} backbone weights (the dense "
            f"network's), got {budget!r}"
        )
    kept: list[int] = []
    metrics: list[dict[str, Any]] = []
    current = nonzero_backbone(model)
    for r, target in enumerate(round_targets(dense, budget, rounds), start=1):
        check_stop(should_stop)
        # amount: of the weights still unpruned (a PruningContainer prunes among those)
        amount = max(0, current - target)
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
        current = nonzero_backbone(model)
        log.info("prune-global round %d/%d: %d backbone weights kept", r, rounds, current)
        kept.append(current)
        if finetune is not None:
            got = finetune(model, r)
            if got:
                metrics.append(got)
    for module, name in params:
        prune.remove(module, name)
        positive_zeros(getattr(module, name))
    return GlobalPruneReport(
        budget=budget,
        dense_backbone=dense,
        rounds=tuple(kept),
        nonzero_backbone=nonzero_backbone(model),
        round_metrics=tuple(metrics),
    )


@torch.no_grad()
def positive_zeros(t: torch.Tensor) -> None:
    """Make ``t``'s negative zeros (a pruning mask times a negative weight) positive, in place
    (``-0.0 + 0.0 == +0.0``; every other value, NaN included, is unchanged): a pruned weight is
    then +0.0, which a sparse .rpg tensor leaves out (docs/FORMAT.md section 3b)."""
    t.add_(0.0)


def pruned_params(model: nn.Module) -> ParamCount:
    """:func:`count_params` with the backbone (and the conv weights) counted as their non-zero
    values: what a pruned network's parameters are."""
    counts = count_params(model)
    zeros = sum(getattr(m, n).numel() for m, n in backbone_weights(model)) - nonzero_backbone(model)
    return replace(counts, conv=counts.conv - zeros, backbone=counts.backbone - zeros)
