"""The ring W (paper eq. 1): one shared Parameter from which many layers' weights are generated.

A :class:`Ring` owns the parameter ``weight`` (N elements), the index array ``u`` and the
per-weight ``scale`` (sign flip times the layer's initialisation multiplier), both rebuilt from
seeds and never saved. All the kernels of a ring are produced by one fused gather,
``ring[u] * scale``, whose backward pass is the scatter-add of eq. (2).

Caching: inside a forward pass of the converted root module the gather runs once and every layer
takes its slice. Under ``torch.no_grad()`` (or when the ring does not require grad) the generated
weights are kept until the ring's values change, so inference costs what the plain network costs.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from . import generator
from .exceptions import RPGConfigError


@dataclass(frozen=True)
class LayerSlot:
    """Where one generated layer's weights live in its ring's index array."""

    name: str  # the module's qualified name in the converted model
    shape: tuple[int, ...]  # the weight shape the module expects
    offset: int  # first position in the ring's index array
    std: float  # the Kaiming-normal (fan_out, ReLU) std this layer's weights are given at init

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class RingSpec:
    """Everything needed to rebuild a ring's generating matrices (not its learned values)."""

    name: str  # the ring's name ("global", "layer1", ...)
    size: int  # N, the number of ring elements (learned parameters)
    seed: int  # the ring's own seed (derived from the model seed and the name)
    permute: bool = True  # permutation p in R_i = b o p (paper Fig. 5 ablation)
    reflect: bool = True  # sign reflection b in R_i = b o p
    layers: tuple[LayerSlot, ...] = field(default_factory=tuple)  # in index-array order

    @property
    def generated(self) -> int:
        """M, the number of weights generated from this ring."""
        return sum(s.numel for s in self.layers)

    @property
    def init_std(self) -> float:
        """The std the ring's values are initialised with.

        The size-weighted geometric mean of the layers' Kaiming stds, so the per-layer
        multipliers ``std_i / init_std`` are spread evenly around 1 (see :func:`multipliers`).
        """
        total = self.generated
        log_mean = sum(s.numel * math.log(s.std) for s in self.layers) / total
        return math.exp(log_mean)

    def multipliers(self) -> list[float]:
        """Per-layer fixed multipliers that give each layer its own Kaiming std at init."""
        base = self.init_std
        return [s.std / base for s in self.layers]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["layers"] = [{**asdict(s), "shape": list(s.shape)} for s in self.layers]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RingSpec:
        layers = tuple(
            LayerSlot(
                name=str(s["name"]),
                shape=tuple(int(x) for x in s["shape"]),
                offset=int(s["offset"]),
                std=float(s["std"]),
            )
            for s in d["layers"]
        )
        return cls(
            name=str(d["name"]),
            size=int(d["size"]),
            seed=int(d["seed"]),
            permute=bool(d["permute"]),
            reflect=bool(d["reflect"]),
            layers=layers,
        )


def kaiming_std(shape: tuple[int, ...]) -> float:
    """Kaiming-normal (fan_out, ReLU) std for a conv or linear weight of ``shape``.

    fan_out follows torch: ``shape[0] * prod(shape[2:])`` (groups are not divided out).
    """
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    fan_out = shape[0] * receptive
    return math.sqrt(2.0 / fan_out)


class Ring(nn.Module):
    """One shared parameter ring and its fixed generating matrices."""

    index: torch.Tensor
    scale: torch.Tensor

    def __init__(self, spec: RingSpec, *, init: bool = True) -> None:
        super().__init__()
        if spec.size <= 0:
            raise RPGConfigError(f"ring '{spec.name}': size must be > 0, got {spec.size}")
        if not spec.layers:
            raise RPGConfigError(f"ring '{spec.name}' generates no layer")
        self.spec = spec
        self.weight = nn.Parameter(torch.empty(spec.size))
        u, scale = build_tables(spec)
        self.register_buffer("index", u, persistent=False)
        self.register_buffer("scale", scale, persistent=False)
        self._slices = {s.name: (s.offset, s.numel, s.shape) for s in spec.layers}
        self._position = {s.name: i for i, s in enumerate(spec.layers)}
        self._sizes = [s.numel for s in spec.layers]
        self._in_forward = False  # set by the hooks rpgify puts on the converted root module
        self._fwd_weights: list[torch.Tensor] | None = None  # per layer, during one root forward
        self._frozen_weights: list[torch.Tensor] | None = None  # per layer, the no-grad cache
        self._frozen_key: tuple[Any, ...] | None = None
        if init:
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """Normal(0, init_std^2) values drawn from a generator seeded by the ring's seed."""
        gen = torch.Generator().manual_seed(self.spec.seed)
        with torch.no_grad():
            values = torch.randn(self.spec.size, generator=gen, dtype=torch.float32)
            self.weight.copy_(values.mul_(self.spec.init_std))

    def extra_repr(self) -> str:
        s = self.spec
        return (
            f"name={s.name!r}, size={s.size}, generated={s.generated}, layers={len(s.layers)}, "
            f"permute={s.permute}, reflect={s.reflect}, seed={s.seed}"
        )

    # --- generation -------------------------------------------------------------------------
    def generate(self) -> torch.Tensor:
        """All weights of this ring, flat, in index-array order: one fused gather."""
        return self.weight.index_select(0, self.index).mul(self.scale)

    def generate_layers(self) -> list[torch.Tensor]:
        """Every layer's weight, in the layers' shapes: one gather, then one split.

        ``split`` (not one slice per layer) keeps the backward pass O(M): autograd joins the
        layers' gradients with a single concatenation instead of a full-size buffer per slice.
        """
        chunks = self.generate().split(self._sizes)
        return [c.view(s.shape) for c, s in zip(chunks, self.spec.layers, strict=True)]

    def _frozen(self) -> list[torch.Tensor]:
        w = self.weight
        key = (w._version, w.data_ptr(), w.device, w.dtype, self.index.device)
        if self._frozen_weights is None or self._frozen_key != key:
            with torch.no_grad():
                self._frozen_weights = self.generate_layers()
            self._frozen_key = key
        return self._frozen_weights

    def layer_weight(self, name: str, *, in_forward: bool) -> torch.Tensor:
        """The generated weight of layer ``name`` in its module's shape."""
        if not (torch.is_grad_enabled() and self.weight.requires_grad):
            return self._frozen()[self._position[name]]
        if in_forward:
            if self._fwd_weights is None:
                self._fwd_weights = self.generate_layers()
            return self._fwd_weights[self._position[name]]
        offset, numel, shape = self._slices[name]
        idx = self.index[offset : offset + numel]
        sc = self.scale[offset : offset + numel]
        return self.weight.index_select(0, idx).mul(sc).view(shape)

    def materialize(self) -> dict[str, torch.Tensor]:
        """Every layer's generated weight as a detached tensor, by layer name."""
        with torch.no_grad():
            layers = self.generate_layers()
        return {s.name: w.clone() for s, w in zip(self.spec.layers, layers, strict=True)}


def build_tables(spec: RingSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """The index array u and the per-weight scale (sign times layer multiplier) of a ring."""
    m = spec.generated
    with ThreadPoolExecutor(max_workers=1) as pool:  # numpy releases the GIL: overlap the two
        signs = pool.submit(generator.signs, spec.seed, m, reflect=spec.reflect)
        u = generator.index_array(spec.seed, spec.size, m, permute=spec.permute)
        b = signs.result()
    mult = np.repeat(
        np.asarray(spec.multipliers(), dtype=np.float32),
        [s.numel for s in spec.layers],
    )
    scale = b.astype(np.float32) * mult
    return torch.from_numpy(u), torch.from_numpy(scale)
