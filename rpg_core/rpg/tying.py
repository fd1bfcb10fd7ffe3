"""Conv weight tying: a conv that reads another conv's weight (shared convs, own norms).

Used where the same convs are applied several times, each application with its own batchnorms:
mdeq's ``recurrence: {mode: shared, norms: per_application}`` and encdec's ``sharing:
reuse-new-bn`` (:mod:`rpg_core.models.stacked`). A tied conv keeps its class (it becomes a subclass of
it, as rpgify's generated layers do) but has no weight Parameter and no state_dict entry of its
own: ``conv.weight`` is the source conv's Parameter, so the tensors are counted and trained once.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

__all__ = ["is_tied", "tie_convs"]


class _TiedConvMixin:
    """Mixed into a tied conv: ``weight`` is the weight of the same-named conv of the source
    (no Parameter of its own, no state_dict entry)."""

    @property
    def weight(self) -> torch.Tensor:
        return cast(torch.Tensor, self.__dict__["_tied_to"].weight)


_TIED: dict[type[nn.Module], type[nn.Module]] = {}


def is_tied(module: nn.Module) -> bool:
    """True for a conv that reads another conv's weight (see :func:`tie_convs`)."""
    return isinstance(module, _TiedConvMixin)


def tie_convs(block: nn.Module, source: nn.Module) -> None:
    """Make every conv of ``block`` read the weight of the same-named conv of ``source``
    (``block`` and ``source`` have the same structure); the rest of ``block`` (its norms, conv
    biases) stays its own."""
    for name, conv in block.named_modules():
        if not isinstance(conv, nn.Conv2d):
            continue
        cls = type(conv)
        if cls not in _TIED:
            _TIED[cls] = type(f"Tied{cls.__name__}", (_TiedConvMixin, cls), {})
        del conv._parameters["weight"]
        conv.__class__ = _TIED[cls]  # type: ignore[assignment]
        conv.__dict__["_tied_to"] = source.get_submodule(name)
