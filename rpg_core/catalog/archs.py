"""The model registry: architecture names and their facts, known without importing torch (timm's
``_registry``).

A built-in architecture is one :class:`ArchInfo` in :data:`ARCHS`: its name, the module whose
``@register_model`` defines it (imported, with torch, only when the builder is first asked for),
the task it serves, whether its builder takes ``recurrence`` or ``stacks``/``sharing``, and the
blocks that ``sharing: rpg`` gives a ring each. A plugin registers at runtime with the same
decorator (a classifier, unless a task claims it).

This module imports nothing heavy: the spec validates ``model.arch`` against :func:`list_models`
in processes (the API) that never build a network.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..exceptions import RPGConfigError

if TYPE_CHECKING:
    from torch import nn

    ModelFn = Callable[..., nn.Module]
else:
    ModelFn = Callable[..., Any]


@dataclass(frozen=True)
class ArchInfo:
    """A built-in architecture."""

    name: str
    module: str  # the module whose @register_model defines it
    task: str = "classification"  # the task it serves (rpg_core.catalog.tasks)
    recurrent: bool = False  # its builder takes ``recurrence`` (model.recurrence)
    stacked: bool = False  # stacked sub-networks: its builder takes ``stacks`` and ``sharing``
    # sharing rpg: one ring per block of these names, the same block of every sub-network
    # generated from it (paper Section 5.4); empty: one global ring over the sub-networks
    ring_blocks: tuple[str, ...] = ()


ARCHS: dict[str, ArchInfo] = {
    a.name: a
    for a in (
        ArchInfo("resnet18", "rpg_core.models.resnet"),
        ArchInfo("resnet34", "rpg_core.models.resnet"),
        ArchInfo("mdeq", "rpg_core.models.mdeq", recurrent=True),
        ArchInfo("hourglass", "rpg_core.models.stacked", task="pose", stacked=True),
        ArchInfo(
            "encdec",
            "rpg_core.models.stacked",
            task="multitask",
            stacked=True,
            ring_blocks=("enc1", "enc2", "enc3", "dec3", "dec2", "dec1", "head"),
        ),
    )
}
# name -> the module that registers it (imported on first use)
BUILTIN_MODELS: dict[str, str] = {a.name: a.module for a in ARCHS.values()}
# built-in architectures whose builder takes ``recurrence`` (``model.recurrence``)
RECURRENT_BUILTINS = frozenset(a.name for a in ARCHS.values() if a.recurrent)
# built-in architectures of stacked sub-networks, whose builder takes ``stacks`` and ``sharing``
STACKED_BUILTINS = frozenset(a.name for a in ARCHS.values() if a.stacked)


def archs_of_task(task: str) -> tuple[str, ...]:
    """The built-in architectures that serve ``task``."""
    return tuple(a.name for a in ARCHS.values() if a.task == task)


_REGISTRY: dict[str, ModelFn] = {}


def register_model(name: str) -> Callable[[ModelFn], ModelFn]:
    """Decorator: register a builder ``fn(*, variant, width, num_classes, in_channels)``."""

    def wrap(fn: ModelFn) -> ModelFn:
        builtin_home = BUILTIN_MODELS.get(name)
        if name in _REGISTRY or (builtin_home is not None and fn.__module__ != builtin_home):
            raise RPGConfigError(f"model {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return wrap


def list_models() -> list[str]:
    """The registered architecture names (built-in and plugins), sorted; imports no model."""
    return sorted(set(BUILTIN_MODELS) | set(_REGISTRY))


def model_builder(name: str) -> ModelFn:
    """The builder registered as ``name`` (importing its module on first use)."""
    if name not in _REGISTRY and name in BUILTIN_MODELS:
        importlib.import_module(BUILTIN_MODELS[name])
    try:
        return _REGISTRY[name]
    except KeyError:
        raise RPGConfigError(
            f"model.arch: unknown {name!r}; registered: {', '.join(list_models())}"
        ) from None


def supports_recurrence(name: str) -> bool:
    """Whether the architecture ``name`` takes ``model.recurrence`` (built-ins: without
    importing them; a plugin: whether its builder has a ``recurrence`` parameter)."""
    if name in BUILTIN_MODELS:
        return name in RECURRENT_BUILTINS
    fn = _REGISTRY.get(name)
    return fn is not None and "recurrence" in inspect.signature(fn).parameters
