"""The model zoo: architectures registered by name and built from a spec (timm style).

``create_model(spec)`` builds the plain network the spec's ``model`` names and, when the spec has
an ``rpg`` section, converts it with :func:`rpg_core.rpgify`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .exceptions import RPGConfigError
from .ring import Ring
from .rpgify import is_generated, rpgify

ModelFn = Callable[..., nn.Module]
_REGISTRY: dict[str, ModelFn] = {}


def register_model(name: str) -> Callable[[ModelFn], ModelFn]:
    """Decorator: register a builder ``fn(*, variant, width, num_classes, in_channels)``."""

    def wrap(fn: ModelFn) -> ModelFn:
        if name in _REGISTRY:
            raise RPGConfigError(f"model {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return wrap


def list_models() -> list[str]:
    """The registered architecture names, sorted."""
    return sorted(_REGISTRY)


def supports_recurrence(name: str) -> bool:
    """Whether the registered builder ``name`` takes ``recurrence`` (``model.recurrence``)."""
    import inspect

    fn = _REGISTRY.get(name)
    return fn is not None and "recurrence" in inspect.signature(fn).parameters


# --- ResNet (torchvision's layout and parameter names; CIFAR or ImageNet stem; any width) ------
class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet with BasicBlocks. ``variant='imagenet'``: 7x7/2 stem + maxpool (torchvision's
    layout and parameter count at width 1); ``'cifar'``: 3x3/1 stem, no maxpool."""

    def __init__(
        self,
        layers: list[int],
        *,
        variant: str = "cifar",
        width: float = 1.0,
        num_classes: int = 10,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        widths = [max(1, round(c * width)) for c in (64, 128, 256, 512)]
        if variant == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, 2, 1)
        elif variant == "cifar":
            self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        else:
            raise RPGConfigError(f"model.variant must be 'cifar' or 'imagenet', got {variant!r}")
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        inplanes = widths[0]
        stages = []
        for i, (w, n) in enumerate(zip(widths, layers, strict=True)):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(inplanes, w, stride=2 if (i > 0 and j == 0) else 1))
                inplanes = w
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)
        self.init_weights()

    def init_weights(self) -> None:
        """Kaiming-normal (fan_out) ordinary convs, unit batchnorms (generated convs: skipped)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and not is_generated(m):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.avgpool(self.features(x)).flatten(1))


@register_model("resnet18")
def resnet18(**kwargs: Any) -> nn.Module:
    return ResNet([2, 2, 2, 2], **kwargs)


@register_model("resnet34")
def resnet34(**kwargs: Any) -> nn.Module:
    return ResNet([3, 4, 6, 3], **kwargs)


def _materialize_ordinary(model: nn.Module) -> None:
    """Give the meta tensors left after rpgify real (CPU) storage and initialise them."""
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


def create_model(
    spec: Any,
    *,
    num_classes: int | None = None,
    in_channels: int | None = None,
    plain: bool = False,
) -> nn.Module:
    """Build the model a spec describes: an ``ExperimentSpec`` (or its dict), or a ``ModelSpec``.

    ``plain``: the architecture without rings even where ``model.recurrence.mode`` is rpg (its
    ``repeats`` blocks with ordinary convs: what an .rpg file's tensors are checked against).

    ``num_classes``/``in_channels`` fill what the spec leaves unset (the dataset's values);
    defaults 10 and 3.
    """
    from .spec import ExperimentSpec, ModelSpec, RPGSpec, parse_spec, recurrence_rpg

    rpg: RPGSpec | None = None
    if isinstance(spec, dict):
        spec = parse_spec(spec)
    if isinstance(spec, ExperimentSpec):
        model_spec, rpg = spec.model, spec.rpg
    elif isinstance(spec, ModelSpec):
        model_spec = spec
    else:
        raise RPGConfigError(
            f"create_model needs an ExperimentSpec, a ModelSpec or a dict, got {type(spec).__name__}"
        )
    if model_spec.arch not in _REGISTRY:
        raise RPGConfigError(
            f"model.arch: unknown {model_spec.arch!r}; registered: {', '.join(list_models())}"
        )
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
    rec = model_spec.recurrence
    if rec is not None:
        if not supports_recurrence(model_spec.arch):
            raise RPGConfigError(
                f"model.recurrence: arch {model_spec.arch!r} does not apply a block repeatedly"
            )
        kwargs["recurrence"] = rec.model_dump()
        if rec.mode == "rpg" and not plain:
            try:
                rpg = recurrence_rpg(rec, rpg)
            except ValueError as err:
                raise RPGConfigError(str(err)) from None
        elif rpg is not None:
            raise RPGConfigError(f"rpg: recurrence mode {rec.mode} takes no rpg section")
    if rpg is None:
        model = _REGISTRY[model_spec.arch](**kwargs)
    else:
        # Build on the meta device: the full-size kernels that rpgify replaces are never
        # allocated or initialised (a quarter of a second for a ResNet18 on a CPU).
        with torch.device("meta"):
            model = _REGISTRY[model_spec.arch](**kwargs)
        rpgify(model, **rpg.rpgify_kwargs())
        _materialize_ordinary(model)
    # The complete spec that rebuilds this architecture (saved into every file we write).
    model.rpg_spec = {  # type: ignore[assignment]
        "model": model_spec.model_dump(),
        "rpg": rpg.model_dump() if rpg is not None else None,
    }
    return model


from . import mdeq as _mdeq  # noqa: E402, F401 - registers "mdeq"
