"""The model registry: architecture names, known without importing torch (timm's ``_registry``).

A built-in architecture is its builder, decorated with ``@register_model`` in its module, and its
line in :data:`BUILTIN_MODELS` (the name and that module, which is imported, with torch, only
when the builder is first asked for); one that takes ``model.recurrence`` or stacks sub-networks
is also named in :data:`RECURRENT_BUILTINS` or :data:`STACKED_BUILTINS`, and one that is not a
classifier in its task's ``archs`` (:data:`rpg_core._tasks.TASKS`). A plugin registers at
runtime with the same decorator.

This module imports nothing heavy: the spec validates ``model.arch`` against :func:`list_models`
in processes (the API) that never build a network.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .exceptions import RPGConfigError

if TYPE_CHECKING:
    from torch import nn

    ModelFn = Callable[..., nn.Module]
else:
    ModelFn = Callable[..., Any]

# name -> the module that registers it (imported on first use; see the module's docstring)
BUILTIN_MODELS: dict[str, str] = {
    "resnet18": "rpg_core.resnet",
    "resnet34": "rpg_core.resnet",
    "mdeq": "rpg_core.mdeq",
    "hourglass": "rpg_core.stacked",
    "encdec": "rpg_core.stacked",
}
# built-in architectures whose builder takes ``recurrence`` (``model.recurrence``)
RECURRENT_BUILTINS = frozenset({"mdeq"})

# built-in architectures of stacked sub-networks, whose builder takes ``stacks`` and ``sharing``
STACKED_BUILTINS = frozenset({"hourglass", "encdec"})

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
