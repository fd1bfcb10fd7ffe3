"""The ring W (paper eq. 1): one shared Parameter from which many layers' weights are generated.

A :class:`Ring` owns the parameter ``weight`` (N elements) and its generating matrices: the index
array ``u`` and the per-weight ``scale`` (sign flip times the layer's initialisation multiplier),
stored together as one signed index, rebuilt from seeds and never saved. The kernels are gathers
from small scaled tables (see :class:`Ring`); their backward pass is the scatter-add of eq. (2).

Caching: inside a forward pass of the converted root module the generation runs once and every
layer takes its own. Under ``torch.no_grad()`` (or when the ring does not require grad) the generated
weights are kept until the ring's values change, so inference costs what the plain network costs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..exceptions import RPGConfigError
from . import generator

_VALUES_LOADED_LATER: ContextVar[bool] = ContextVar("rpg_ring_values_loaded_later", default=False)


@contextmanager
def values_loaded_later() -> Iterator[None]:
    """Rings built inside skip their random initialisation (their values are ``torch.empty``):
    for a loader that sets every ring's values right after (``load_compact``: 2M normal draws
    saved per 2M-element ring)."""
    token = _VALUES_LOADED_LATER.set(True)
    try:
        yield
    finally:
        _VALUES_LOADED_LATER.reset(token)


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
    generator: int = generator.GENERATOR_VERSION  # which generator builds the index array

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
        """The ring as .rpg files store it (the generator version is file-wide metadata)."""
        d = asdict(self)
        del d["generator"]
        d["layers"] = [{**asdict(s), "shape": list(s.shape)} for s in self.layers]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], generator_version: int = 1) -> RingSpec:
        """A ring from :meth:`to_dict`'s form; ``generator_version``: the file's generator."""
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
            generator=generator_version,
        )


def kaiming_std(shape: tuple[int, ...]) -> float:
    """Kaiming-normal (fan_out, ReLU) std for a conv or linear weight of ``shape``.

    fan_out follows torch: ``shape[0] * prod(shape[2:])`` (groups are not divided out).
    """
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    fan_out = shape[0] * receptive
    return math.sqrt(2.0 / fan_out)


class Ring(nn.Module):
    """One shared parameter ring and its fixed generating matrices.

    The generating matrices are stored as one *signed index* per generated weight: the position
    of ``w[u_i] * scale_i`` in its layer's expanded ring ``[c w, -c w]`` (``c`` the layer's
    multiplier, 2N elements). Generation is a gather per layer from that small table (no
    multiply over the M generated weights), and its backward a scatter-add into it folded back
    as ``c (e[:N] - e[N:])`` (eq. 2 of the paper). ``scale_i`` is exactly ``+-c``, so the values
    are bit for bit those of ``w[u] * scale``.
    """

    signed_index: torch.Tensor
    bucket_scale: torch.Tensor

    def __init__(self, spec: RingSpec, *, init: bool = True) -> None:
        super().__init__()
        if spec.size <= 0:
            raise RPGConfigError(f"ring '{spec.name}': size must be > 0, got {spec.size}")
        if not spec.layers:
            raise RPGConfigError(f"ring '{spec.name}' generates no layer")
        self.spec = spec
        self.weight = nn.Parameter(torch.empty(spec.size))
        signed_index, bucket_scale = build_tables(spec)
        self.register_buffer("signed_index", signed_index, persistent=False)
        self.register_buffer("bucket_scale", bucket_scale, persistent=False)
        self._slices = {s.name: (s.offset, s.numel, s.shape) for s in spec.layers}
        self._position = {s.name: i for i, s in enumerate(spec.layers)}
        self._sizes = [s.numel for s in spec.layers]
        # the layers' multipliers c as Python floats (float32 values): no device sync per forward
        self._scales = [float(c) for c in bucket_scale[0::2].tolist()]
        self._in_forward = False  # set by the hooks rpgify puts on the converted root module
        self._fwd_weights: list[torch.Tensor] | None = None  # per layer, during one root forward
        self._frozen_weights: list[torch.Tensor] | None = None  # per layer, the no-grad cache
        self._frozen_key: tuple[Any, ...] | None = None
        if init and not _VALUES_LOADED_LATER.get():
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
            f"permute={s.permute}, reflect={s.reflect}, seed={s.seed}, generator={s.generator}"
        )

    # --- the generating matrices in the paper's terms (computed on demand) ------------------
    @property
    def index(self) -> torch.Tensor:
        """The index array u: ring element of every generated weight (paper eq. 1)."""
        return torch.remainder(self.signed_index, self.spec.size)

    @property
    def scale(self) -> torch.Tensor:
        """Per generated weight: its sign flip times its layer's multiplier."""
        sizes = torch.tensor(self._sizes, device=self.signed_index.device)
        layer = torch.repeat_interleave(torch.arange(len(self._sizes), device=sizes.device), sizes)
        negative = (self.signed_index >= self.spec.size).long()
        return self.bucket_scale[2 * layer + negative]

    # --- generation -------------------------------------------------------------------------
    def generate_layers(self) -> list[torch.Tensor]:
        """Every layer's weight, in the layers' shapes.

        The backward pass scatter-adds each layer's gradient straight into its expanded ring
        (no concatenation of the layers' gradients, no multiply over the M weights).
        """
        flat = _Generate.apply(self.weight, self._scales, self.signed_index, self._sizes)
        return [c.view(s.shape) for c, s in zip(flat, self.spec.layers, strict=True)]

    def _frozen(self) -> list[torch.Tensor]:
        w = self.weight
        key = (w._version, w.data_ptr(), w.device, w.dtype, self.signed_index.device)
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
        position = self._position[name]
        idx = self.signed_index[offset : offset + numel]
        (out,) = _Generate.apply(self.weight, [self._scales[position]], idx, [numel])
        return out.view(shape)

    def materialize(self) -> dict[str, torch.Tensor]:
        """Every layer's generated weight as a detached tensor, by layer name."""
        with torch.no_grad():
            layers = self.generate_layers()
        return {s.name: w.clone() for s, w in zip(self.spec.layers, layers, strict=True)}


class _Generate(torch.autograd.Function):
    """Every layer's weights, ``[c_l w, -c_l w][signed_index_l]``, and the ring's gradient of
    eq. (2): each layer's gradient scatter-added (times ``c_l``) into one 2N-element buffer ``e``
    (small enough to stay in the cache for the rings people train), then ``e[:N] - e[N:]``.

    Forward, whichever is cheaper: a gather per layer from its scaled table ``[c_l w, -c_l w]``
    (2N multiplies per layer: small rings), or one gather from ``[w, -w]`` and a multiply of each
    layer by ``c_l`` (M multiplies: rings as large as the network). Both give ``w[u] * scale``
    bit for bit. Few, large operations on purpose: on a busy CPU every operation pays a
    thread-pool synchronisation.
    """

    @staticmethod
    def forward(
        ctx: Any,
        weight: torch.Tensor,
        scales: list[float],
        signed_index: torch.Tensor,
        sizes: list[int],
    ) -> tuple[torch.Tensor, ...]:
        n = weight.numel()
        outs: list[torch.Tensor] = []
        offset = 0
        if 2 * n * len(sizes) <= len(signed_index):
            for c, size in zip(scales, sizes, strict=True):
                table = torch.cat([weight * c, weight * -c])
                outs.append(table.index_select(0, signed_index[offset : offset + size]))
                offset += size
        else:
            flat = torch.cat([weight, -weight]).index_select(0, signed_index)
            for c, chunk in zip(scales, flat.split(sizes), strict=True):
                outs.append(chunk.mul_(c))
        ctx.save_for_backward(signed_index)
        ctx.sizes, ctx.scales, ctx.ring_size = sizes, scales, n
        return tuple(outs)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, *grads: torch.Tensor | None) -> tuple[Any, ...]:
        (signed_index,) = ctx.saved_tensors
        n = ctx.ring_size
        dtype = next((g.dtype for g in grads if g is not None), torch.float32)
        e = torch.zeros(2 * n, dtype=dtype, device=signed_index.device)
        offset = 0
        for g, c, size in zip(grads, ctx.scales, ctx.sizes, strict=True):
            if g is not None:
                e.index_add_(0, signed_index[offset : offset + size], g.reshape(-1), alpha=c)
            offset += size
        return e[:n] - e[n:], None, None, None


def build_tables(spec: RingSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """The signed index array and the bucket scales of a ring (see :class:`Ring`).

    ``signed_index_i = u_i`` where the sign is +1, ``N + u_i`` where it is -1: a position in
    the layer's expanded ring ``[c w, -c w]``. ``bucket_scale`` is ``[+c_1, -c_1, +c_2, ...]``.
    """
    mult = np.asarray(spec.multipliers(), dtype=np.float32)
    bucket_scale = np.empty(2 * len(mult), dtype=np.float32)
    bucket_scale[0::2], bucket_scale[1::2] = mult, -mult
    signed = generator.signed_index(
        spec.seed,
        spec.size,
        spec.generated,
        permute=spec.permute,
        reflect=spec.reflect,
        version=spec.generator,
        workers=torch.get_num_threads(),  # the blocks shared out as torch shares its own work
    )
    return torch.from_numpy(signed), torch.from_numpy(bucket_scale)
