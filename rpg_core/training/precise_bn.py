"""Precise batchnorm statistics: recompute the running mean and variance before evaluation.

During training a batchnorm layer keeps an exponential moving average (momentum 0.1) of its
batches' statistics. After a few dozen steps that average still carries the statistics of the
initial weights, which the network has long left: evaluated in ``eval()`` mode, a network that
trains well can then score at chance with a validation loss in the thousands. Recomputing the
statistics as the plain average over some training batches, with the weights as they are now,
removes that lag (Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

PRECISE_BN_BATCHES = 20  # training batches the statistics are averaged over


def batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The batchnorm layers of ``model`` that track running statistics."""
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]


@torch.no_grad()
def recompute_batchnorm(
    model: nn.Module,
    batches: Iterable[torch.Tensor],
    *,
    max_batches: int = PRECISE_BN_BATCHES,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
) -> int:
    """Replace every batchnorm's running statistics with their average over ``batches``.

    Returns the number of batches used (0: no batchnorm, nothing changed). The model's
    training mode and the layers' momenta are restored afterwards.
    """
    layers = batchnorms(model)
    if not layers:
        return 0
    was_training = model.training
    momenta = [bn.momentum for bn in layers]
    for bn in layers:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches that follow
    model.train()
    used = 0
    try:
        for x in batches:
            if used >= max_batches:
                break
            with autocast():
                model(x)
            used += 1
    finally:
        for bn, momentum in zip(layers, momenta, strict=True):
            bn.momentum = momentum
        model.train(was_training)
    log.debug("batchnorm statistics recomputed over %d batches", used)
    return used
