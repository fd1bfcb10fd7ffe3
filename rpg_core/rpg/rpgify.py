"""``rpgify``: turn the conv (and, opt-in, linear) layers of any network into views of rings.

A converted layer keeps its class (it becomes a subclass of it, as ``torch.nn.utils.parametrize``
does), so ``isinstance(m, nn.Conv2d)`` holds and ``m.weight`` reads the generated kernel. The
layer's own full-size weight Parameter is deleted: ``model.parameters()`` holds the rings and the
ordinary parameters only. The rings are registered once, under ``model.rpg_rings`` (under the first generated layer when the
model is a Sequential, whose forward runs every child).
"""

from __future__ import annotations

import copy
import fnmatch
import logging
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from ..exceptions import RPGConfigError
from . import generator
from .ring import LayerSlot, Ring, RingSpec, kaiming_std

log = logging.getLogger(__name__)

RINGS_ATTR = "rpg_rings"
GENERATED_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_RING_NAME = re.compile(r"[A-Za-z0-9_\-]{1,64}")  # always fullmatch

RingSize = int | float | Mapping[str, int | float]
Scope = str | Mapping[str, str]


class RPGLayerMixin:
    """Mixed into a converted layer's class: ``weight`` is generated from the layer's ring."""

    _rpg_base_class: type[nn.Module]

    @property
    def weight(self) -> torch.Tensor:
        ring: Ring = self.__dict__["_rpg_ring"]
        return ring.layer_weight(self.__dict__["_rpg_name"], in_forward=ring._in_forward)

    @property
    def rpg_ring_name(self) -> str:
        return str(self.__dict__["_rpg_ring"].spec.name)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, ring={self.rpg_ring_name!r}"  # type: ignore[misc]


_CLASSES: dict[type[nn.Module], type[nn.Module]] = {}


def _rpg_class(cls: type[nn.Module]) -> type[nn.Module]:
    if cls not in _CLASSES:
        new = type(f"RPG{cls.__name__}", (RPGLayerMixin, cls), {"_rpg_base_class": cls})
        _CLASSES[cls] = new
    return _CLASSES[cls]


def is_generated(module: nn.Module) -> bool:
    """True for a layer whose weight comes from a ring."""
    return isinstance(module, RPGLayerMixin)


def generated_weight(module: nn.Module) -> torch.Tensor:
    """The generated kernel of a converted layer."""
    if not isinstance(module, RPGLayerMixin):
        raise RPGConfigError(f"{type(module).__name__} is not a generated layer")
    return module.weight


def rings(model: nn.Module) -> dict[str, Ring]:
    """The rings of a converted model, by name (empty for a plain model)."""
    return {m.spec.name: m for m in model.modules() if isinstance(m, Ring)}


# --- selection ------------------------------------------------------------------------------
def _candidates(model: nn.Module, linear: bool) -> list[tuple[str, nn.Module]]:
    # Subclasses (timm's StdConv2d, say) are converted too.
    types = GENERATED_TYPES + ((nn.Linear,) if linear else ())
    return [(n, m) for n, m in model.named_modules() if n and isinstance(m, types)]


def _match(patterns: Iterable[str], names: list[str], arg: str) -> set[str]:
    chosen: set[str] = set()
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise RPGConfigError(f"{arg}: patterns must be non-empty strings, got {pattern!r}")
        hits = {n for n in names if fnmatch.fnmatchcase(n, pattern)}
        if not hits:
            raise RPGConfigError(
                f"{arg}: pattern {pattern!r} matches no convertible layer; "
                f"layer names look like {names[:3]!r}"
            )
        chosen |= hits
    return chosen


def select_layers(
    model: nn.Module,
    *,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    linear: bool = False,
) -> list[tuple[str, nn.Module]]:
    """The layers rpgify would generate, in module order.

    Default: every conv except the stem (the first conv, which sees the input) and, with
    ``linear=True``, every Linear except the last one (the classifier head).
    """
    cands = _candidates(model, linear)
    names = [n for n, _ in cands]
    if include is not None:
        if isinstance(include, str):
            include = [include]
        chosen = _match(include, names, "include")
    else:
        chosen = set(names)
        convs = [n for n, m in cands if not isinstance(m, nn.Linear)]
        lins = [n for n, m in cands if isinstance(m, nn.Linear)]
        if convs:
            chosen.discard(convs[0])
        if lins:
            chosen.discard(lins[-1])
    if exclude is not None:
        if isinstance(exclude, str):
            exclude = [exclude]
        chosen -= _match(exclude, names, "exclude")
    return [(n, m) for n, m in cands if n in chosen]


# --- grouping into rings --------------------------------------------------------------------
def group_layers(layers: list[tuple[str, nn.Module]], scope: Scope) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    if isinstance(scope, str):
        if scope == "global":
            groups["global"] = [n for n, _ in layers]
        elif scope == "stage":
            for n, _ in layers:
                groups.setdefault(n.split(".")[0], []).append(n)
        else:
            raise RPGConfigError(
                f"scope must be 'global', 'stage' or a mapping from layer-name patterns to "
                f"ring names, got {scope!r}"
            )
        return groups
    if not isinstance(scope, Mapping) or not scope:
        raise RPGConfigError(f"scope: a mapping must be non-empty, got {scope!r}")
    names = [n for n, _ in layers]
    for pattern in scope:
        _match([pattern], names, "scope")
    for n in names:
        ring_name = next((r for p, r in scope.items() if fnmatch.fnmatchcase(n, p)), None)
        if ring_name is None:
            log.info("rpgify: layer %s matches no scope pattern and stays ordinary", n)
            continue
        groups.setdefault(ring_name, []).append(n)
    return groups


def _check_ring_name(name: str) -> str:
    if not isinstance(name, str) or not _RING_NAME.fullmatch(name):
        raise RPGConfigError(f"scope: ring name {name!r} must be 1-64 letters, digits, '_' or '-'")
    return name


def _one_size(value: Any, generated: int, arg: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RPGConfigError(
            f"{arg} must be a count (int > 0) or a fraction in (0, 1], got {value!r}"
        )
    if isinstance(value, float):
        if not (0.0 < value <= 1.0) or math.isnan(value):
            raise RPGConfigError(
                f"{arg} as a fraction of the generated weights must be in (0, 1], got {value!r}; "
                f"pass an int for an absolute number of ring elements"
            )
        return max(1, round(value * generated))
    if value <= 0:
        raise RPGConfigError(f"{arg} must be > 0, got {value}")
    if value >= 2**31:
        raise RPGConfigError(f"{arg} must be below 2**31 ring elements, got {value}")
    return int(value)


def _split_count(total: int, weights: dict[str, int]) -> dict[str, int]:
    """Split ``total`` proportionally to ``weights`` (largest remainder), each at least 1."""
    whole = sum(weights.values())
    exact = {k: total * w / whole for k, w in weights.items()}
    sizes = {k: max(1, math.floor(v)) for k, v in exact.items()}
    left = total - sum(sizes.values())
    for k in sorted(exact, key=lambda k: exact[k] - math.floor(exact[k]), reverse=True):
        if left <= 0:
            break
        sizes[k] += 1
        left -= 1
    return sizes


def ring_sizes(ring_size: RingSize, generated: dict[str, int]) -> dict[str, int]:
    """Resolve ``ring_size`` (count, fraction, or per-ring mapping) into a size per ring."""
    if isinstance(ring_size, Mapping):
        unknown = set(ring_size) - set(generated)
        missing = set(generated) - set(ring_size)
        if unknown or missing:
            raise RPGConfigError(
                f"ring_size: the mapping must name exactly the rings {sorted(generated)}; "
                f"unknown {sorted(unknown)}, missing {sorted(missing)}"
            )
        return {k: _one_size(ring_size[k], generated[k], f"ring_size[{k!r}]") for k in generated}
    if isinstance(ring_size, float):
        return {k: _one_size(ring_size, m, "ring_size") for k, m in generated.items()}
    total = _one_size(ring_size, sum(generated.values()), "ring_size")
    if total < len(generated):
        raise RPGConfigError(
            f"ring_size {total} is smaller than the number of rings ({len(generated)}); "
            f"give at least one element per ring"
        )
    return _split_count(total, generated)


# --- conversion -----------------------------------------------------------------------------
class _ForwardScope:
    """Root-module hooks: inside one forward pass each ring is gathered once, then released."""

    def __init__(self, rings: list[Ring], entering: bool) -> None:
        self.rings = rings
        self.entering = entering

    def __call__(self, module: nn.Module, *args: Any) -> None:
        for ring in self.rings:
            ring._fwd_weights = None
            ring._in_forward = self.entering


def _host(model: nn.Module, first_layer: nn.Module) -> nn.Module:
    """Where the rings are registered: the root, unless iterating the root runs its children
    (Sequential, ModuleList, ModuleDict), where the first generated layer hosts them instead."""
    containers = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
    return first_layer if isinstance(model, containers) else model


def _convert_layer(module: nn.Module, name: str, ring: Ring) -> None:
    weight = module._parameters.pop("weight", None)
    if weight is None:
        raise RPGConfigError(f"layer {name!r} has no weight parameter to generate")
    module.__class__ = _rpg_class(type(module))
    module.__dict__["_rpg_ring"] = ring
    module.__dict__["_rpg_name"] = name


def rpgify(
    model: nn.Module,
    ring_size: RingSize,
    *,
    scope: Scope = "global",
    permute: bool = True,
    reflect: bool = True,
    seed: int = 0,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    linear: bool = False,
    generator_version: int = generator.GENERATOR_VERSION,
) -> nn.Module:
    """Convert ``model`` in place so its layers are generated from shared rings; return it.

    Args:
        model: any ``nn.Module``.
        ring_size: the number of ring elements (int), or a fraction in (0, 1] of the generated
            weights (float), or a mapping ``{ring_name: count_or_fraction}``. With several rings a
            count is split between them in proportion to the weights each generates.
        scope: ``"global"`` (one ring), ``"stage"`` (one ring per top-level child, for ResNets
            ``layer1``..``layer4``: the paper's block-level RPGs), or a mapping from layer-name
            glob patterns to ring names (the first matching pattern wins; unmatched layers stay
            ordinary), so corresponding layers of repeated sub-networks can share a ring.
        permute, reflect: the paper's permutation and sign reflection (Fig. 5 ablation).
        seed: the model seed; each ring's seed is derived from it and the ring's name.
        include, exclude: glob patterns over module names restricting the converted layers.
        linear: also generate Linear layers: all but the last one, the classifier head, which
            stays ordinary as the stem does. A model whose only Linear is its head (a ResNet)
            gets an error saying so; to generate the head too, name it in ``include``
            (``include=["layer*", "fc"], linear=True``).
        generator_version: the index generator (2, the default: keyed bijection; 1: the
            sort-based one of files written before it; 3: HashedNets' hash of each position,
            with replacement; see :mod:`rpg_core.rpg.generator`).

    The arguments are recorded on the model (``model.rpg_rpgify``): ``save_compact`` rebuilds a
    converted torchvision model from them and its builder's name.
    """
    if not isinstance(model, nn.Module):
        raise RPGConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if any(is_generated(m) or isinstance(m, Ring) for m in model.modules()):
        raise RPGConfigError(
            "model is already converted by rpgify; build a fresh model to convert it again"
        )
    seed = generator.check_seed(seed)
    generator_version = generator.check_version(generator_version)
    include = None if include is None else _as_list(include)
    exclude = None if exclude is None else _as_list(exclude)
    layers = select_layers(model, include=include, exclude=exclude, linear=linear)
    if linear and include is None and not any(isinstance(m, nn.Linear) for _, m in layers):
        heads = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        raise RPGConfigError(
            "linear: this model has no Linear layer to generate besides its classifier head "
            f"{heads[-1]!r}, which stays ordinary (as the stem does); to generate the head too, "
            f"name it: include=['layer*', {heads[-1]!r}] (spec: rpg.include), or drop linear"
            if heads
            else "linear: this model has no Linear layer; drop linear"
        )
    if not layers:
        raise RPGConfigError(
            "model has nothing to generate: no Conv layer besides the stem "
            "(pass include=[...] to choose layers, or linear=True for Linear layers)"
        )
    modules = dict(layers)
    groups = {_check_ring_name(k): v for k, v in group_layers(layers, scope).items()}
    if not groups:
        raise RPGConfigError("scope: no layer matched any scope pattern; nothing to generate")
    shapes = {n: tuple(modules[n]._parameters["weight"].shape) for n, _ in layers}  # type: ignore[union-attr]
    generated = {g: sum(math.prod(shapes[n]) for n in names) for g, names in groups.items()}
    sizes = ring_sizes(ring_size, generated)

    bank = nn.ModuleDict()
    for g, names in groups.items():
        slots, offset = [], 0
        for n in names:
            slots.append(LayerSlot(n, shapes[n], offset, kaiming_std(shapes[n])))
            offset += math.prod(shapes[n])
        spec = RingSpec(
            name=g,
            size=sizes[g],
            seed=generator.derive_seed(seed, g),
            permute=bool(permute),
            reflect=bool(reflect),
            layers=tuple(slots),
            generator=generator_version,
        )
        ring = Ring(spec)
        weight = modules[names[0]]._parameters["weight"]
        assert weight is not None
        if not weight.is_meta:  # a model built on the meta device gets its rings on the CPU
            ring.to(device=weight.device)
        bank[g] = ring
        for n in names:
            _convert_layer(modules[n], n, ring)
    _host(model, modules[layers[0][0]]).add_module(RINGS_ATTR, bank)
    model.__dict__["rpg_rpgify"] = {
        "ring_size": dict(ring_size) if isinstance(ring_size, Mapping) else ring_size,
        "scope": dict(scope) if isinstance(scope, Mapping) else scope,
        "permute": bool(permute),
        "reflect": bool(reflect),
        "seed": seed,
        "include": include,
        "exclude": exclude,
        "linear": bool(linear),
        "generator": generator_version,
    }
    ring_list = list(bank.values())
    model.register_forward_pre_hook(_ForwardScope(ring_list, entering=True))  # type: ignore[arg-type]
    model.register_forward_hook(_ForwardScope(ring_list, entering=False), always_call=True)  # type: ignore[arg-type]
    log.info(
        "rpgify: %d layers, %s",
        len(modules),
        ", ".join(f"{g}: {sizes[g]} elements for {generated[g]} weights" for g in groups),
    )
    return model


def _as_list(patterns: Iterable[str] | str) -> list[str]:
    return [patterns] if isinstance(patterns, str) else list(patterns)


def materialize(model: nn.Module) -> nn.Module:
    """A plain copy of a converted model: every generated weight becomes an ordinary Parameter.

    The copy has no rings and no hooks of rpgify, and works with TorchScript and ONNX export.
    """
    plain = copy.deepcopy(model)
    plain.__dict__.pop("rpg_rpgify", None)
    for module in list(plain.modules()):
        if RINGS_ATTR in module._modules:
            del module._modules[RINGS_ATTR]
        if not is_generated(module):
            continue
        weight = generated_weight(module).detach().clone()
        base = type(module)._rpg_base_class  # type: ignore[attr-defined]
        del module.__dict__["_rpg_ring"]
        del module.__dict__["_rpg_name"]
        module.__class__ = base
        module.weight = nn.Parameter(weight)
    for hooks in (plain._forward_pre_hooks, plain._forward_hooks):
        for key in [k for k, h in hooks.items() if isinstance(h, _ForwardScope)]:
            del hooks[key]
            plain._forward_hooks_always_called.pop(key, None)
    return plain
