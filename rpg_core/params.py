"""Parameter counts by part, as the paper counts them."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn

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
