"""The model zoo: architectures registered by name and built from a spec (timm's ``_factory``).

``create_model(spec)`` builds the plain network the spec's ``model`` names and, when the spec has
an ``rpg`` section, converts it with :func:`rpg_core.rpgify`; a ``method`` section's budget is
first made concrete (:func:`rpg_core.models.budget.resolve_method`: the width or ring size). The names live in the torch-free
:mod:`rpg_core.catalog.archs` (re-exported here); torch is imported when a model is built.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, cast

from ..catalog.archs import (
    BUILTIN_MODELS,
    ModelFn,
    list_models,
    model_builder,
    register_model,
    supports_recurrence,
)
from ..catalog.tasks import DEFAULT_TASK, task_of_arch
from ..exceptions import RPGConfigError
from ..spec import ExperimentSpec, ModelSpec, RPGSpec, parse_spec
from .budget import BackboneOf, resolve_method
from .options import SpecOptions, plain_options, recurrent_options

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "BUILTIN_MODELS",
    "ModelFn",
    "create_model",
    "list_models",
    "model_builder",
    "backbone_counter",
    "model_spec_of",
    "plain_backbone",
    "register_model",
    "supports_recurrence",
]


def _materialize_ordinary(model: nn.Module) -> None:
    """Give the meta tensors left after rpgify real (CPU) storage and initialise them."""
    import torch
    from torch import nn

    from ..rpg.ring import Ring

    for module in model.modules():
        if isinstance(module, Ring):
            continue
        moved = False
        for name, p in list(module._parameters.items()):
            if p is not None and p.is_meta:
                fresh = torch.empty_like(p, device="cpu")
                module._parameters[name] = nn.Parameter(fresh, requires_grad=p.requires_grad)
                moved = True
        for name, b in list(module._buffers.items()):
            if b is not None and b.is_meta:
                module._buffers[name] = torch.empty_like(b, device="cpu")
                moved = True
        reset = getattr(module, "reset_parameters", None)
        if moved and callable(reset):
            reset()
    init = getattr(model, "init_weights", None)
    if callable(init):
        init()


def model_spec_of(model: nn.Module) -> dict[str, Any] | None:
    """The ``{"model": ..., "rpg": ...}`` spec a model was built from by create_model, if any."""
    spec = model.__dict__.get("rpg_spec")
    return spec if isinstance(spec, dict) else None


def _spec_options(arch: str, build: ModelFn) -> SpecOptions:
    """The family's ``spec_options`` (its module's), else the default: a builder that takes
    ``recurrence`` (a plugin's) gets :func:`recurrent_options`, any other :func:`plain_options`."""
    family = sys.modules.get(getattr(build, "__module__", ""))
    own = getattr(family, "spec_options", None)
    if callable(own):
        return cast(SpecOptions, own)
    return recurrent_options if supports_recurrence(arch) else plain_options


def _with_task(spec: dict[str, Any]) -> dict[str, Any]:
    """A ``{"model": ...}`` dict (a saved file's spec) gets the task its architecture serves."""
    model = spec.get("model")
    if "task" in spec or not isinstance(model, dict) or not isinstance(model.get("arch"), str):
        return spec
    return {**spec, "task": task_of_arch(model["arch"])}


def plain_backbone(model: ModelSpec, *, num_classes: int | None, in_channels: int | None) -> int:
    """The backbone parameters of the plain network ``model`` names (built on the meta device:
    nothing allocated; :func:`rpg_core.rpg.params.count_params`)."""
    import torch

    from ..rpg.params import count_params

    with torch.device("meta"):
        net = create_model(model, num_classes=num_classes, in_channels=in_channels, plain=True)
    return count_params(net).backbone


def filter_floor(model: ModelSpec) -> int:
    """The fewest backbone weights filter pruning (``method: prune-filters``) leaves in the
    plain network ``model`` names: every residual block's conv1 at one filter (built on the
    meta device; :func:`rpg_core.models.blocks.filter_range`)."""
    import torch

    from .blocks import filter_range

    with torch.device("meta"):
        net = create_model(model, plain=True)
    return filter_range(net)[0]


def backbone_counter(num_classes: int | None, in_channels: int | None) -> BackboneOf:
    """:func:`plain_backbone` for the given classes and channels (what ``resolve_method`` asks)."""

    def count(model: ModelSpec) -> int:
        return plain_backbone(model, num_classes=num_classes, in_channels=in_channels)

    return count


def create_model(
    spec: Any,
    *,
    num_classes: int | None = None,
    in_channels: int | None = None,
    plain: bool = False,
) -> nn.Module:
    """Build the model a spec describes: an ``ExperimentSpec`` (or its dict), or a ``ModelSpec``.

    ``plain``: the architecture without rings even where ``model.recurrence.mode`` or
    ``model.sharing`` is rpg (its ``repeats`` blocks or ``stacks`` sub-networks with ordinary
    convs: what an .rpg file's tensors are checked against).

    ``num_classes``/``in_channels`` fill what the spec leaves unset (the dataset's values);
    defaults 10 and 3.
    """
    rpg: RPGSpec | None = None
    if isinstance(spec, dict):
        spec = parse_spec(_with_task(spec))
    if isinstance(spec, ExperimentSpec) and spec.method is not None:
        # method.budget: the width or ring size it gives, against the dense network
        counter = backbone_counter(num_classes, in_channels)
        spec = resolve_method(spec, counter, filter_floor).spec
    if isinstance(spec, ExperimentSpec):
        model_spec, rpg = spec.model, spec.rpg
    elif isinstance(spec, ModelSpec):
        model_spec = spec
    else:
        raise RPGConfigError(
            f"create_model needs an ExperimentSpec, a ModelSpec or a dict, got {type(spec).__name__}"
        )
    build = model_builder(model_spec.arch)
    model_spec = model_spec.model_copy(
        update={
            "num_classes": model_spec.num_classes or num_classes or 10,
            "in_channels": model_spec.in_channels or in_channels or 3,
        }
    )
    kwargs: dict[str, Any] = {
        "variant": model_spec.variant,
        "width": model_spec.width,
        "num_classes": model_spec.num_classes,
        "in_channels": model_spec.in_channels,
    }
    # the family's own entry point reads the options only it has (stacks, sharing, recurrence)
    model_spec, extra, rpg = _spec_options(model_spec.arch, build)(model_spec, rpg, plain)
    kwargs.update(extra)
    if rpg is None:
        model = build(**kwargs)
    else:
        import torch

        from ..rpg.rpgify import rpgify

        # Build on the meta device: the full-size kernels that rpgify replaces are never
        # allocated or initialised (a quarter of a second for a ResNet18 on a CPU).
        with torch.device("meta"):
            model = build(**kwargs)
        rpgify(model, **rpg.rpgify_kwargs())
        _materialize_ordinary(model)
    # The complete spec that rebuilds this architecture (saved into every file we write).
    # (a task other than classification is named too: files of classifiers keep the
    # {model, rpg} header that readers before tasks existed accept)
    saved: dict[str, Any] = {
        "model": model_spec.model_dump(),
        "rpg": rpg.model_dump() if rpg is not None else None,
    }
    task = task_of_arch(model_spec.arch)
    if task != DEFAULT_TASK:
        saved = {"task": task, **saved}
    model.rpg_spec = saved  # type: ignore[assignment]
    return model
