"""torchvision classification models in ``.rpg`` files, rebuilt by their builder's name:
``{"arch": "torchvision:NAME", "num_classes": N}``."""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import nn

from ..exceptions import RPGConfigError
from ..rpg.ring import Ring

TORCHVISION_PREFIX = "torchvision:"


def _classification_builders() -> list[str]:
    import torchvision

    return list(torchvision.models.list_models(module=torchvision.models))


def torchvision_model(model_spec: dict[str, Any]) -> nn.Module:
    """The plain torchvision classification model ``{"arch": "torchvision:NAME", "num_classes":
    N}`` names (random weights; built on the current default device)."""
    import torchvision

    if set(model_spec) - {"arch", "num_classes"}:
        raise RPGConfigError(
            f"a torchvision model spec holds arch and num_classes only, got {sorted(model_spec)}"
        )
    name = str(model_spec["arch"])[len(TORCHVISION_PREFIX) :]
    n = model_spec.get("num_classes")
    if name not in _classification_builders():
        raise RPGConfigError(f"unknown torchvision classification model {name[:60]!r}")
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 100_000:
        raise RPGConfigError(f"num_classes must be an int in 1..100000, got {n!r}")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. googlenet's init-weights notice
        return torchvision.models.get_model(name, weights=None, num_classes=n)


def build_torchvision(spec: dict[str, Any]) -> nn.Module:
    """A torchvision model converted with rpgify as the spec's ``rpg`` says (rings seeded)."""
    from ..rpg.rpgify import rpgify
    from .factory import _materialize_ordinary

    with torch.device("meta"):
        model = torchvision_model(spec["model"])
    if spec["rpg"] is not None:
        kwargs = dict(spec["rpg"])
        kwargs["generator_version"] = kwargs.pop("generator", 1)  # absent: before generator 2
        rpgify(model, **kwargs)
    _materialize_ordinary(model)
    model.rpg_spec = json.loads(json.dumps(spec))
    return model


def _plain_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """The state_dict shapes of the plain network a converted model came from."""
    from ..rpg.rpgify import RINGS_ATTR

    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items() if f"{RINGS_ATTR}." not in k}
    for ring in (m for m in model.modules() if isinstance(m, Ring)):
        for slot in ring.spec.layers:
            shapes[f"{slot.name}.weight"] = tuple(slot.shape)
    return shapes


def torchvision_spec(model: nn.Module) -> dict[str, Any]:
    """``{"model": {"arch": "torchvision:NAME", "num_classes": N}, "rpg": ...}`` for a
    torchvision classification model (converted with rpgify or plain), found by rebuilding the
    candidate builders on the meta device and comparing every shape. Raises RPGConfigError
    saying what to do for any other model."""
    what = type(model).__name__
    rpg_kwargs = model.__dict__.get("rpg_rpgify")
    module = getattr(type(model), "_rpg_base_class", type(model)).__module__
    candidates: list[str] = []
    if module.startswith("torchvision.models"):
        import torchvision

        builder = torchvision.models.get_model_builder
        candidates = [n for n in _classification_builders() if builder(n).__module__ == module]
    if not candidates or (rpg_kwargs is None and any(isinstance(m, Ring) for m in model.modules())):
        raise RPGConfigError(
            f"save_compact: cannot rebuild a {what} by name. A .rpg file rebuilds its "
            "architecture: build the model with rpg_core.create_model(spec) (registered "
            "architectures: `rpg models`; add yours with rpg_core.register_model), or convert a "
            "torchvision classification model with rpg_core.rpgify. To keep this one, save "
            "rpg_core.materialize(model).state_dict() with safetensors (never torch.save)"
        )
    target = _plain_shapes(model)
    heads = {m.out_features for m in model.modules() if isinstance(m, nn.Linear)} | {
        m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)
    }
    for name in candidates:
        for n in sorted(heads):
            spec = {"arch": f"{TORCHVISION_PREFIX}{name}", "num_classes": n}
            try:
                with torch.device("meta"):
                    plain = torchvision_model(spec)
            except Exception:  # noqa: BLE001, S112 - a builder that rejects n is not the one
                continue
            if {k: tuple(v.shape) for k, v in plain.state_dict().items()} == target:
                return {"model": spec, "rpg": json.loads(json.dumps(rpg_kwargs))}
    raise RPGConfigError(
        f"save_compact: this {what} matches none of torchvision's {', '.join(candidates)} "
        "(a modified architecture cannot be rebuilt by name); register it with "
        "rpg_core.register_model and build it with rpg_core.create_model"
    )
