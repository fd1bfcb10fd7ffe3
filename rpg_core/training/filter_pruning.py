"""Structured L1 filter pruning of a plain network to a budget (``method: prune-filters``,
issue 24; Li et al., *Pruning Filters for Efficient ConvNets*, ICLR 2017).

The plan is :mod:`rpg_core.training.pruning`'s (the paper's Appendix A pruning of RPG
networks): in every residual block (``conv1 -> bn1 -> conv2``) the same share of ``conv1``'s
output filters goes, those with the lowest L1 norm, and with each filter its ``bn1`` channel
and ``conv2``'s matching input column; the block's output width and the residual additions
are untouched. Each removed filter takes ``cost`` backbone weights (its ``conv1`` row plus the
``conv2`` column), and the plan (:func:`~rpg_core.training.pruning.plan_counts`) removes the
whole filters whose weights come closest to the asked number: the budget is met **within one
filter** (the largest block's cost).

As ``prune-global`` does, the trained dense network is pruned in ``rounds`` with a geometric
schedule (:func:`~rpg_core.training.global_pruning.round_targets`), each round followed by
``finetune``. The filters are not cut out but masked with ``torch.nn.utils.prune.
custom_from_mask`` (the ``conv1`` rows, the ``bn1`` weight and bias, the ``conv2`` columns), so
fine-tuning keeps them zero and the network keeps the architecture its spec builds (its
``.rpg`` file stores the zeros compactly: docs/FORMAT.md, sparse tensors); ``prune.remove``
then leaves plain tensors with zeros. A dead filter's channel is exactly zero after ``bn1`` and
the ReLU, so the network computes what the narrowed one
(:func:`~rpg_core.training.pruning.prune_model`'s surgery) computes; the report gives the
narrowed network's multiply-accumulates.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from ..exceptions import RPGConfigError
from ..models.blocks import filter_range
from ..rpg.params import count_macs
from ..rpg.rpgify import rings
from ..stopping import StopCheck, check_stop
from .global_pruning import nonzero_backbone, positive_zeros, round_targets
from .pruning import _cost, _parts, _prune_block, plan_counts, prunable_blocks

log = logging.getLogger(__name__)

__all__ = [
    "FilterPruneReport",
    "check_filter_budget",
    "filter_budget_range",
    "live_filters",
    "prune_filters",
]


@dataclass(frozen=True)
class FilterPruneReport:
    """What filter pruning did: the budget, the dense backbone, each round's kept weights."""

    budget: int
    dense_backbone: int
    rounds: tuple[int, ...]  # backbone weights kept after each round (whole filters)
    nonzero_backbone: int  # after the last round, fine-tuning and prune.remove
    kept: dict[str, int]  # block -> conv1 filters kept
    channels: dict[str, int]  # block -> conv1 filters of the dense network
    filter_cost: int  # the largest block's weights per filter: the budget's tolerance
    macs_before: int | None = None
    macs_after: int | None = None  # of the narrowed network (the dead filters cut out)
    round_metrics: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": "prune-filters",
            "budget": self.budget,
            "dense_backbone": self.dense_backbone,
            "kept_per_round": list(self.rounds),
            "nonzero_backbone": self.nonzero_backbone,
            "sparsity": 1 - self.nonzero_backbone / self.dense_backbone,
            "filter_cost": self.filter_cost,
            "macs_before": self.macs_before,
            "macs_after": self.macs_after,
            "blocks": [
                {"block": b, "channels": self.channels[b], "kept": k} for b, k in self.kept.items()
            ],
            "round_metrics": [dict(m) for m in self.round_metrics],
        }


def _blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    if rings(model):
        raise RPGConfigError(
            "method prune-filters prunes a plain network; this one is generated from rings "
            "(use method rpg, or omit rpg)"
        )
    blocks = prunable_blocks(model)
    if not blocks:
        raise RPGConfigError(
            "method prune-filters: the network has no residual blocks with conv1, bn1 and conv2 "
            "to prune (use method prune-global)"
        )
    return blocks


def filter_budget_range(model: nn.Module) -> tuple[int, int]:
    """The fewest and the most backbone weights filter pruning can leave: every block's
    ``conv1`` at one filter, and the dense network (:func:`rpg_core.models.blocks.filter_range`)."""
    _blocks(model)
    return filter_range(model)


def check_filter_budget(model: nn.Module, budget: int) -> int:
    """The dense backbone; RPGConfigError naming ``method.budget`` (and the count to ask for)
    when filter pruning cannot leave ``budget`` backbone weights."""
    low, dense = filter_budget_range(model)
    what = (
        f"method.budget: prune-filters keeps {low}..{dense} backbone weights (every block's "
        f"conv1 keeps at least one filter; the most is the dense network's), got {budget!r}"
    )
    if isinstance(budget, bool) or not isinstance(budget, int):
        raise RPGConfigError(f"{what}; give a count")
    if budget < low:
        raise RPGConfigError(f"{what}; ask for at least {low}, or use method prune-global")
    if budget > dense:
        raise RPGConfigError(f"{what}; ask for at most {dense}")
    return dense


def live_filters(block: nn.Module) -> torch.Tensor:
    """The indices of ``block.conv1``'s filters that are not all zero (through a mask too)."""
    w = _parts(block)[0].weight.detach()
    return torch.nonzero(w.flatten(1).abs().sum(dim=1) > 0).flatten()


def _keep(block: nn.Module, kept: int) -> torch.Tensor:
    """A 0/1 mask over ``conv1``'s filters keeping the ``kept`` of largest L1 norm (a dead
    filter's norm is 0, so it stays dead)."""
    c1 = _parts(block)[0]
    norms = c1.weight.detach().abs().flatten(1).sum(dim=1)
    order = torch.argsort(norms, descending=True, stable=True)
    mask = torch.zeros_like(norms)
    mask[order[:kept]] = 1
    return mask


def _mask(module: nn.Module, name: str, mask: torch.Tensor) -> None:
    if prune.is_pruned(module) and hasattr(module, f"{name}_mask"):
        prune.remove(module, name)  # the zeros so far stay; one mask per tensor
    prune.custom_from_mask(module, name, mask)


def _apply(block: nn.Module, keep: torch.Tensor) -> None:
    c1, bn, c2 = _parts(block)
    w1 = c1.weight
    _mask(c1, "weight", keep.view(-1, 1, 1, 1).expand_as(w1).to(w1.dtype).contiguous())
    if c1.bias is not None:
        _mask(c1, "bias", keep.to(c1.bias.dtype))
    if bn.affine:
        _mask(bn, "weight", keep.to(bn.weight.dtype))
        _mask(bn, "bias", keep.to(bn.bias.dtype))
    w2 = c2.weight
    _mask(c2, "weight", keep.view(1, -1, 1, 1).expand_as(w2).to(w2.dtype).contiguous())


def _remove_masks(model: nn.Module) -> None:
    for m in model.modules():
        for name in ("weight", "bias"):
            if hasattr(m, f"{name}_mask"):
                prune.remove(m, name)
                positive_zeros(getattr(m, name))


def _narrowed_macs(model: nn.Module, kept: dict[str, int], size: tuple[int, int, int]) -> int:
    narrowed = copy.deepcopy(model)
    narrowed.__dict__.pop("rpg_spec", None)
    for name, block in prunable_blocks(narrowed):
        _prune_block(block, kept[name])  # keeps the largest L1 norms: the live filters
    return count_macs(narrowed, size)


def prune_filters(
    model: nn.Module,
    budget: int,
    *,
    rounds: int = 3,
    finetune: Callable[[nn.Module, int], dict[str, Any] | None] | None = None,
    should_stop: StopCheck | None = None,
    input_size: tuple[int, int, int] | None = None,
) -> FilterPruneReport:
    """Prune ``model``'s residual blocks in place to ``budget`` backbone weights, within one
    filter (see the module).

    ``finetune(model, round)`` runs after each round with the masks on and may return the
    round's metrics. ``input_size`` (C, H, W): count the multiply-accumulates before and after
    (of the network with the dead filters cut out). Raises RPGConfigError naming
    ``method.budget`` when the budget is not in the range filter pruning can reach
    (:func:`filter_budget_range`), and for an RPG network."""
    blocks = _blocks(model)
    dense = check_filter_budget(model, budget)
    names = [n for n, _ in blocks]
    channels = {n: _parts(b)[0].out_channels for n, b in blocks}
    costs = [_cost(b) for _, b in blocks]
    macs_before = count_macs(model, input_size) if input_size is not None else None
    kept_counts = dict(channels)
    kept: list[int] = []
    metrics: list[dict[str, Any]] = []
    try:
        for r, target in enumerate(round_targets(dense, budget, rounds), start=1):
            check_stop(should_stop)
            live = [kept_counts[n] for n in names]
            current = dense - sum(
                (channels[n] - kept_counts[n]) * c for n, c in zip(names, costs, strict=True)
            )
            plans = plan_counts(names, live, costs, current - target)
            with torch.no_grad():
                for (name, block), p in zip(blocks, plans, strict=True):
                    kept_counts[name] = p.kept
                    _apply(block, _keep(block, p.kept))
            now = dense - sum(
                (channels[n] - kept_counts[n]) * c for n, c in zip(names, costs, strict=True)
            )
            log.info("prune-filters round %d/%d: %d backbone weights kept", r, rounds, now)
            kept.append(now)
            if finetune is not None:
                got = finetune(model, r)
                if got:
                    metrics.append(got)
    finally:
        _remove_masks(model)
    macs_after = _narrowed_macs(model, kept_counts, input_size) if input_size is not None else None
    return FilterPruneReport(
        budget=budget,
        dense_backbone=dense,
        rounds=tuple(kept),
        nonzero_backbone=nonzero_backbone(model),
        kept=kept_counts,
        channels=channels,
        filter_cost=max(costs),
        macs_before=macs_before,
        macs_after=macs_after,
        round_metrics=tuple(metrics),
    )
