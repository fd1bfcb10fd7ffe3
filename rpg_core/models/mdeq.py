"""``mdeq``: a classifier in the layout of multi-scale deep equilibrium models (MDEQ, paper Table 1).

A stem, one multi-scale (MS) block and a classification head (every branch average-pooled, a
batchnorm of the pooled features, one Linear). The MS block holds parallel
branches at three resolutions (full, 1/2, 1/4; ``16, 32, 64`` channels times ``width``), one
residual block per branch, and a cross-resolution fusion (strided 3x3 convs down, 1x1 convs and
nearest upsampling up). The block maps the branch states ``z`` and the stem's output ``x``
(injected into the full-resolution branch) to new states: ``z_{k+1} = f_k(z_k; x)``; ``z_0`` is
``x`` pooled to each branch's resolution (no parameters; see :meth:`MDEQNet.initial_states`).

``model.recurrence`` says how the block is applied (see :class:`rpg_core.spec.RecurrenceSpec`):

- ``shared``: one block applied ``repeats`` times (plain weight tying: its convs *and* its
  batchnorms are the same modules at every application); with ``norms: per_application``,
  ``repeats`` blocks whose convs read block 0's weights (:func:`rpg_core.rpg.tying.is_tied`) and
  whose batchnorms are their own: rpg's parameter count exactly.
- ``rpg``: ``repeats`` blocks (``blocks.0`` ..), every conv of them generated from one ring whose
  default size is one block's conv weights (``rpg.ring_size`` = ``1 / repeats`` of the generated
  weights), each application with its own slots of the ring's index array (its own permutation
  and signs); batchnorms per application. ``create_model`` fills the ``rpg`` section.
- ``equilibrium``: the fixed point ``z* = f(z*; x)`` of one block, found by a torchdeq solver
  (Anderson by default, 30 iterations, relative residual 1e-3) and differentiated implicitly
  (IFT, torchdeq's ``ift=True``). The same convs, but a block that has a fixed point: no
  residual ``+ z`` inside the branches (it puts the identity in the Jacobian), the norms after
  the convs are :class:`ChannelAffine` (a norm after a conv of ``z`` would undo any contraction;
  batch statistics would also move the fixed point with the batch), the norm after the fusion is
  a GroupNorm of one group (it bounds the states, so training cannot blow them up), and the block's convs
  start at ``EQUILIBRIUM_INIT_GAIN`` times Kaiming (a contraction at init, as MDEQ starts small).
  ``model.last_residual`` holds the solver's last relative residual.

Parameters at equal width: ``shared`` and ``equilibrium`` have the same count (ChannelAffine and
GroupNorm have the weight and bias a BatchNorm has); ``rpg`` has the same conv/ring count and
``(repeats - 1)`` more sets of the block's norm weights (``norm_params_per_block`` each).
"""

from __future__ import annotations

import math
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..exceptions import RPGConfigError
from ..rpg.rpgify import is_generated
from ..rpg.tying import is_tied, tie_convs
from .factory import register_model
from .options import recurrent_options

# this family's options, for create_model (rpg_core.models.options)
spec_options = recurrent_options

BASE_CHANNELS = (16, 32, 64)  # per branch (full, 1/2, 1/4 resolution) at width 1
EQUILIBRIUM_INIT_GAIN = 0.5  # equilibrium: the block's Kaiming init times this


def _bn(c: int) -> nn.Module:
    return nn.BatchNorm2d(c)


def _gn(c: int) -> nn.Module:
    return nn.GroupNorm(1, c)


class ChannelAffine(nn.Module):
    """A per-channel scale and shift (a norm's weight and bias, no statistics): the norm of the
    equilibrium block, whose fixed point a normalisation would make unreachable (a norm after a
    conv of ``z`` undoes any contraction of the conv's weights)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class _BranchBlock(nn.Module):
    """A residual block of one branch (MDEQ's): the injection is added before the second norm,
    a third norm follows the residual sum (it bounds the states, which the fixed point needs)."""

    def __init__(self, c: int, norm: Any, residual: bool = True) -> None:
        super().__init__()
        self.residual = residual
        self.conv1 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.norm1 = norm(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.norm2 = norm(c)

    def forward(self, z: torch.Tensor, inj: torch.Tensor | None) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(z)))
        out = self.conv2(out)
        if inj is not None:
            out = out + inj
        out = self.norm2(out)
        return F.relu(out + z if self.residual else out)


class MSBlock(nn.Module):
    """The multi-scale block: a residual block per branch, then every branch fused into each."""

    def __init__(
        self, channels: list[int], norm: Any, residual: bool = True, post: Any = None
    ) -> None:
        super().__init__()
        self.branches = nn.ModuleList(_BranchBlock(c, norm, residual) for c in channels)
        fuse = nn.ModuleList()
        for j, cj in enumerate(channels):
            row = nn.ModuleList()
            for i, ci in enumerate(channels):
                if i == j:
                    row.append(nn.Identity())
                elif i < j:  # down: (j - i) strided 3x3 convs
                    steps: list[nn.Module] = []
                    for s in range(j - i):
                        last = s == j - i - 1
                        steps.append(nn.Conv2d(ci, cj if last else ci, 3, 2, 1, bias=False))
                        steps.append(norm(cj if last else ci))
                        if not last:
                            steps.append(nn.ReLU())
                    row.append(nn.Sequential(*steps))
                else:  # up: 1x1 conv and norm here, nearest upsampling in forward
                    row.append(nn.Sequential(nn.Conv2d(ci, cj, 1, bias=False), norm(cj)))
            fuse.append(row)
        self.fuse = fuse
        self.post = nn.ModuleList((post or norm)(c) for c in channels)

    def forward(self, zs: list[torch.Tensor], x: torch.Tensor) -> list[torch.Tensor]:
        ys = [
            b(z, x if k == 0 else None)
            for k, (b, z) in enumerate(zip(self.branches, zs, strict=True))
        ]
        out = []
        for j, row in enumerate(cast(nn.ModuleList, r) for r in self.fuse):
            size = ys[j].shape[-2:]
            total = ys[j]
            for i, layer in enumerate(row):
                if i == j:
                    continue
                y = layer(ys[i])
                if i > j:
                    y = F.interpolate(y, size=size, mode="nearest")
                total = total + y
            out.append(self.post[j](F.relu(total)))
        return out


def norm_params_per_block(block: nn.Module) -> int:
    """The norm weights and biases of one MS block (what ``rpg`` has ``repeats - 1`` more of)."""
    norms = (nn.BatchNorm2d, nn.GroupNorm, ChannelAffine)
    return sum(p.numel() for m in block.modules() if isinstance(m, norms) for p in m.parameters())


class MDEQNet(nn.Module):
    """Stem, MS block (applied as ``recurrence`` says), head (pooled branches, one Linear)."""

    def __init__(
        self,
        *,
        variant: str = "cifar",
        width: float = 1.0,
        num_classes: int = 10,
        in_channels: int = 3,
        recurrence: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        rec = dict(recurrence or {"mode": "shared", "repeats": 1})
        self.mode = str(rec.get("mode", "shared"))
        self.repeats = int(rec.get("repeats", 1))
        if self.mode not in ("shared", "rpg", "equilibrium"):
            raise RPGConfigError(f"model.recurrence.mode: unknown {self.mode!r}")
        if variant not in ("cifar", "imagenet"):
            raise RPGConfigError(f"model.variant must be 'cifar' or 'imagenet', got {variant!r}")
        channels = [max(2, round(c * width)) for c in BASE_CHANNELS]
        self.channels = channels
        stride = 2 if variant == "imagenet" else 1
        c0 = channels[0]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c0, 3, stride, 1, bias=False),
            nn.BatchNorm2d(c0),
            nn.ReLU(inplace=True),
            nn.Conv2d(c0, c0, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c0),
            nn.ReLU(inplace=True),
        )
        norm = ChannelAffine if self.mode == "equilibrium" else _bn
        per_application = self.mode == "rpg" or rec.get("norms") == "per_application"
        count = self.repeats if per_application else 1
        eq = self.mode == "equilibrium"
        post = _gn if eq else None
        self.blocks = nn.ModuleList(MSBlock(channels, norm, not eq, post) for _ in range(count))
        # a batchnorm of the pooled features: outside the block, so the fixed point keeps no batch
        # statistics, and the head sees features that vary across the batch in every mode
        self.head_norm = nn.BatchNorm1d(sum(channels))
        self.fc = nn.Linear(sum(channels), num_classes)
        if self.mode == "shared" and count > 1:
            for block in self.blocks[1:]:  # its own norms, block 0's convs
                tie_convs(block, self.blocks[0])
        if self.mode == "equilibrium":
            from torchdeq import get_deq  # MIT licence; torch and numpy only

            self.__dict__["deq"] = get_deq(
                core="indexing",
                ift=True,
                f_solver=str(rec.get("solver", "anderson")),
                b_solver=str(rec.get("solver", "anderson")),
                f_max_iter=int(rec.get("max_iter", 30)),
                b_max_iter=int(rec.get("backward_max_iter", 30)),
                f_tol=float(rec.get("tol", 1e-3)),
                b_tol=float(rec.get("backward_tol", 1e-4)),
                f_stop_mode="rel",
                b_stop_mode="rel",
            )
        self.last_residual: float | None = None  # equilibrium: the solver's relative residual
        self.init_weights()

    def init_weights(self) -> None:
        """Kaiming-normal (fan_out) ordinary convs, unit norms (generated convs: skipped)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and not is_generated(m) and not is_tied(m):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d | nn.GroupNorm | ChannelAffine):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.mode == "equilibrium":  # a contraction at init (MDEQ: small block weights)
            with torch.no_grad():
                for m in self.blocks.modules():
                    if isinstance(m, nn.Conv2d):
                        m.weight.mul_(EQUILIBRIUM_INIT_GAIN)

    def initial_states(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``z_0``: the stem's output at every branch's resolution (average pooling) and channel
        count (channels repeated), with no parameters, so every conv of the block sees a signal
        at its first application (zeros would leave the first application's first convs
        without a gradient)."""
        zs = []
        c0 = x.shape[1]
        for k, c in enumerate(self.channels):
            z = F.avg_pool2d(x, 2**k, ceil_mode=True) if k else x
            zs.append(z.repeat(1, -(-c // c0), 1, 1)[:, :c])
        return zs

    def solve(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The branch states after the MS block: K applications, or the fixed point."""
        zs = self.initial_states(x)
        if self.mode != "equilibrium":
            for k in range(self.repeats):
                zs = self.blocks[k if len(self.blocks) > 1 else 0](zs, x)
            return zs
        shapes = [z.shape[1:] for z in zs]
        sizes = [math.prod(s) for s in shapes]
        batch = x.shape[0]

        def unpack(v: torch.Tensor) -> list[torch.Tensor]:
            return [p.reshape(batch, *s) for p, s in zip(v.split(sizes, 1), shapes, strict=True)]

        def f(v: torch.Tensor) -> torch.Tensor:
            return torch.cat([z.flatten(1) for z in self.blocks[0](unpack(v), x)], 1)

        v0 = torch.cat([z.flatten(1) for z in zs], 1)
        states, info = self.__dict__["deq"](f, v0)
        rel = info.get("rel_lowest")
        self.last_residual = float(rel.max()) if isinstance(rel, torch.Tensor) else None
        return unpack(states[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        zs = self.solve(self.stem(x))
        pooled = [z.mean((2, 3)) for z in zs]
        return self.fc(self.head_norm(torch.cat(pooled, 1)))


@register_model("mdeq")
def mdeq(*, recurrence: dict[str, Any] | None = None, **kwargs: Any) -> nn.Module:
    """MDEQ layout (stem, one MS block of 3 resolutions, head); ``recurrence`` in the spec."""
    return MDEQNet(recurrence=recurrence, **kwargs)
