"""An ``.rpg`` header checked against the architecture its spec names, on PyTorch's ``meta``
device (no memory, no seeds): every tensor the model needs, with its shape and dtype, and nothing
else; the parameter count under a limit before anything is allocated."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..exceptions import RPGConfigError
from ..models.torchvision import TORCHVISION_PREFIX, torchvision_model
from .container import fail as _fail
from .header import RING_DTYPES, RING_SUFFIX, CompactHeader

DEFAULT_MAX_PARAMS = 500_000_000  # parameters of the plain architecture a file may ask us to build
TORCH_TO_CODE = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """What the file's spec builds, worked out on the meta device (no memory, no seeds)."""

    plain: nn.Module  # the plain architecture on the meta device
    parameters: int  # learned parameters of the plain (materialised) architecture
    generated: dict[str, int]  # generated weights per ring
    parts: dict[str, str]  # tensor name -> part (ring, conv, norm, head, other); h.stored_as
    learned: set[str]  # tensor names that are learned parameters (not buffers)


def _build_plain_meta(h: CompactHeader) -> nn.Module:
    from ..models import create_model, list_models

    model_spec = h.spec["model"]
    arch = model_spec.get("arch")

    if isinstance(arch, str) and arch.startswith(TORCHVISION_PREFIX):
        try:
            with torch.device("meta"):
                return torchvision_model(model_spec)
        except RPGConfigError as err:
            raise _fail(h.path, f"metadata: the model spec is invalid: {err}") from None
    if arch not in list_models():
        raise _fail(h.path, f"unknown model arch {str(arch)[:40]!r}: written by {h.writer}, "
                            f"this rpg-studio knows {', '.join(list_models())}; "
                            "upgrade (or install the plugin registering it) to read it")  # fmt: skip
    try:
        with torch.device("meta"):
            return create_model({"model": model_spec}, plain=True)
    except RPGConfigError as err:
        raise _fail(h.path, f"metadata: the model spec is invalid: {err}") from None


def _part_of(plain: nn.Module, name: str) -> str:
    module_name, _, pname = name.rpartition(".")
    module = plain.get_submodule(module_name) if module_name else plain
    from ..rpg.params import NORM_TYPES

    if isinstance(module, NORM_TYPES):
        return "norm"
    if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d) and pname == "weight":
        return "conv"
    if isinstance(module, nn.Linear):
        return "head"
    return "other"


def _ring_host_prefix(plain: nn.Module, first_layer: str) -> str:
    containers = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
    return f"{first_layer}." if isinstance(plain, containers) else ""


def _expected_tensors(h: CompactHeader, plain: nn.Module) -> dict[str, tuple[tuple[int, ...], str]]:
    """Tensor name -> (shape, dtype code) that the file must hold exactly."""
    state = plain.state_dict()
    expected = {k: (tuple(v.shape), TORCH_TO_CODE.get(v.dtype, "?")) for k, v in state.items()}
    for r in h.rings:
        for s in r["layers"]:
            key = f"{s['name']}.weight"
            if key not in expected:
                raise _fail(h.path, f"ring {r['name']!r} generates {s['name']!r}, which is not "
                                    "a layer with a weight in this architecture")  # fmt: skip
            if expected[key][0] != tuple(s["shape"]):
                raise _fail(h.path, f"ring {r['name']!r}: layer {s['name']!r} has shape "
                                    f"{list(expected[key][0])}, the file says {s['shape']}")  # fmt: skip
            del expected[key]
    if h.rings:
        prefix = _ring_host_prefix(plain, h.rings[0]["layers"][0]["name"])
        for r in h.rings:
            expected[f"{prefix}{RING_SUFFIX}{r['name']}.weight"] = (
                (r["size"],),
                RING_DTYPES[h.ring_dtype],
            )
    return expected


def _check_tensors(h: CompactHeader, expected: dict[str, tuple[tuple[int, ...], str]]) -> None:
    stored = h.logical_tensors()  # a sparse tensor stands for the dense one it rebuilds
    missing = sorted(set(expected) - set(stored))
    extra = sorted(set(stored) - set(expected))
    if missing or extra:
        raise _fail(h.path, f"the tensors do not match the model: missing {missing[:5]}, "
                            f"unexpected {extra[:5]}")  # fmt: skip
    for name, (shape, dtype) in expected.items():
        got_shape, got_dtype = stored[name]
        if got_shape != shape or got_dtype != dtype:
            raise _fail(h.path, f"tensor {name!r}: expected shape {list(shape)} of {dtype}, "
                                f"got {list(got_shape)} of {got_dtype}")  # fmt: skip


def plan(h: CompactHeader, *, max_params: int = DEFAULT_MAX_PARAMS) -> Plan:
    """Check the header against the architecture its spec names, on the meta device."""
    plain = _build_plain_meta(h)
    parameters = sum(p.numel() for p in plain.parameters())
    if parameters > max_params:
        raise _fail(h.path, f"the model has {parameters:,} parameters, above the limit of "
                            f"{max_params:,} (raise max_params to load it)")  # fmt: skip
    _check_tensors(h, _expected_tensors(h, plain))
    learned = {n for n, _ in plain.named_parameters()} | set(h.ring_keys.values())
    parts = {
        n: ("ring" if n in h.ring_keys.values() else _part_of(plain, n))
        for n in h.logical_tensors()
    }
    generated = {r["name"]: sum(math.prod(s["shape"]) for s in r["layers"]) for r in h.rings}
    return Plan(plain, parameters, generated, parts, learned)
