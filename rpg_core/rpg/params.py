"""Parameter counts by part, as the paper counts them, and multiply-accumulates."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from ..exceptions import RPGConfigError
from .rpgify import GENERATED_TYPES, generated_weight, is_generated, rings

NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


@dataclass(frozen=True)
class ParamCount:
    """Learned parameters by part. ``backbone`` is what the paper calls backbone parameters."""

    ring: int  # ring elements (all rings)
    conv: int  # ordinary conv weights (the stem, and any conv left ungenerated)
    norm: int  # batchnorm / groupnorm / layernorm weights and biases
    head: int  # Linear layers (the classifier) that are not generated
    other: int  # everything else (conv biases, ...)
    generated: int  # weights generated from the rings (not learned parameters)
    backbone: int  # RPG model: the ring; plain model: the conv weights except the stem

    @property
    def total(self) -> int:
        return self.ring + self.conv + self.norm + self.head + self.other

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "total": self.total}


def count_params(model: nn.Module) -> ParamCount:
    """Count ``model``'s learned parameters by part (each shared tensor once)."""
    ring_params = {id(r.weight) for r in rings(model).values()}
    parts = {"ring": 0, "conv": 0, "norm": 0, "head": 0, "other": 0}
    convs: list[int] = []
    generated = 0
    seen: set[int] = set()
    for module in model.modules():
        if is_generated(module):
            generated += generated_weight(module).numel()
        for pname, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            n = p.numel()
            if id(p) in ring_params:
                parts["ring"] += n
            elif isinstance(module, NORM_TYPES):
                parts["norm"] += n
            elif isinstance(module, GENERATED_TYPES) and pname == "weight":
                parts["conv"] += n
                convs.append(n)
            elif isinstance(module, nn.Linear):
                parts["head"] += n
            else:
                parts["other"] += n
    backbone = parts["ring"] if ring_params else sum(convs[1:])
    return ParamCount(generated=generated, backbone=backbone, **parts)


def count_macs(model: nn.Module, input_size: tuple[int, int, int]) -> int:
    """Multiply-accumulates of the Conv and Linear layers for one image of ``input_size`` (C, H, W)."""
    if len(input_size) != 3 or any(not isinstance(s, int) or s < 1 for s in input_size):
        raise RPGConfigError(f"input_size must be (channels, height, width), got {input_size!r}")
    total = 0

    def hook(m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.modules.conv._ConvNd):
            per_out = (m.in_channels // m.groups) * math.prod(m.kernel_size)
            total += out.numel() * per_out
        elif isinstance(m, nn.Linear):
            total += out.numel() * m.in_features

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, nn.modules.conv._ConvNd | nn.Linear)
    ]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_size, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total
