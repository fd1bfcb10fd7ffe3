"""The residual blocks whose ``conv1`` filters structured pruning removes (``prune`` jobs,
:mod:`rpg_core.training.pruning`; ``method: prune-filters``,
:mod:`rpg_core.training.filter_pruning`): modules with ``conv1 -> bn1 -> conv2`` (torchvision's
BasicBlock layout), and what a removed filter costs. Here, below the training layer, so that a
spec's budget can be checked against them where the model is built
(:func:`rpg_core.models.budget.resolve_method`)."""

from __future__ import annotations

import math

from torch import nn

__all__ = ["filter_cost", "filter_range", "is_prunable_block", "prunable_blocks"]


def is_prunable_block(m: nn.Module) -> bool:
    """``m`` has ``conv1 -> bn1 -> conv2`` of matching widths, without groups."""
    c1, bn, c2 = (getattr(m, k, None) for k in ("conv1", "bn1", "conv2"))
    return (
        isinstance(c1, nn.Conv2d)
        and isinstance(bn, nn.BatchNorm2d)
        and isinstance(c2, nn.Conv2d)
        and c1.groups == 1
        and c2.groups == 1
        and c1.out_channels == bn.num_features == c2.in_channels
    )


def prunable_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Residual blocks with ``conv1 -> bn1 -> conv2`` (torchvision BasicBlock layout)."""
    return [(n, m) for n, m in model.named_modules() if n and is_prunable_block(m)]


def filter_cost(block: nn.Module) -> int:
    """Backbone weights removed with one ``conv1`` filter: its row and ``conv2``'s column."""
    c1, c2 = block.conv1, block.conv2
    assert isinstance(c1, nn.Conv2d) and isinstance(c2, nn.Conv2d)
    return c1.in_channels * math.prod(c1.kernel_size) + c2.out_channels * math.prod(c2.kernel_size)


def filter_range(model: nn.Module) -> tuple[int, int]:
    """The fewest and the most backbone weights (:func:`rpg_core.rpg.params.count_params`)
    filter pruning can leave: every block's ``conv1`` at one filter, and the network itself.
    Works on the meta device."""
    from ..rpg.params import count_params

    dense = count_params(model).backbone
    blocks = prunable_blocks(model)
    removable = 0
    for _, b in blocks:
        c1 = b.conv1
        assert isinstance(c1, nn.Conv2d)
        removable += (c1.out_channels - 1) * filter_cost(b)
    return dense - removable, dense
