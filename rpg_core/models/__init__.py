"""Networks by name: the factory (:mod:`.factory`: ``create_model`` from a spec, timm's
``_factory``) and the families it forwards to, each registering its names: :mod:`.resnet`
(ResNet-18/34), :mod:`.mdeq` (equilibrium-style recurrence), :mod:`.stacked` (hourglass and
encoder-decoder sub-networks) and :mod:`.torchvision` (torchvision classifiers, by name in
``.rpg`` files). The names themselves are torch-free, in :mod:`rpg_core.catalog.archs`.
"""

from __future__ import annotations

from typing import Any

from .factory import (
    BUILTIN_MODELS,
    ModelFn,
    create_model,
    list_models,
    model_builder,
    model_spec_of,
    register_model,
    supports_recurrence,
)

__all__ = [
    "BUILTIN_MODELS",
    "ModelFn",
    "create_model",
    "list_models",
    "model_builder",
    "model_spec_of",
    "register_model",
    "supports_recurrence",
]


def __getattr__(name: str) -> Any:
    # The ResNet classes moved to rpg_core.models.resnet; old imports keep working.
    if name in ("ResNet", "BasicBlock", "resnet18", "resnet34"):
        from . import resnet

        return getattr(resnet, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
