"""Stacked sub-networks (paper Sections 4, 5.3, 5.4): ``hourglass`` (pose) and ``encdec``
(depth + surface normals).

Both are a ``stem`` (an ordinary conv block, never shared nor generated) followed by ``N``
identical sub-networks under ``stacks`` (``model.stacks``). Sub-network ``i`` maps a feature map
to its predictions and to the feature map of sub-network ``i + 1`` (the same shape as its input),
so every sub-network can be applied to any other's output, and every one of them is supervised
(intermediate supervision); the last one is evaluated. ``forward(x)`` returns the list of the
``N`` sub-networks' prediction dicts, in order.

- ``hourglass`` (paper Table 4, Fig. 6; Newell et al.'s stacked hourglass): the stem halves the
  resolution (:data:`HEATMAP_STRIDE`); a sub-network is an hourglass (:data:`HOURGLASS_DEPTH`
  max-pool / upsample levels of pre-activation bottleneck residual blocks), a feature block, a
  1x1 conv to one heatmap per joint (``num_classes`` joints) and Newell's re-injection
  ``x + merge_features(features) + merge_heatmaps(heatmaps)``. Predictions: ``{"heatmaps":
  [B, J, S/2, S/2]}``. ``model.sharing``:

  - ``none``: ``N`` sub-networks with their own weights (``N`` times the parameters);
  - ``full`` (CPM): one sub-network applied ``N`` times (``stacks`` holds one module: its convs
    and its batchnorms' weights and biases serve every application); each application keeps
    its own batchnorm running statistics (:class:`StagedBatchNorm2d`: buffers, not parameters).
    CPM, which has no batchnorm, shares all of its weights; statistics averaged over stages
    whose inputs differ would normalise every stage wrongly at evaluation (measured: at 4
    stages the validation loss 40% above the training loss and PCKh below the mean pose's,
    docs/BENCHMARKS.md, "Table 4 twin"), a handicap that is not weight sharing;
  - ``rpg``: ``N`` sub-networks whose convs ``create_model`` generates from one global ring the
    size of one sub-network's convs, each with its own permutation, signs and batchnorms.

- ``encdec`` (paper Table 5, in the spirit of SharpNet): a full-resolution stem; a sub-network is
  a U-Net of seven blocks (:data:`rpg_core.spec.ENCDEC_BLOCKS`): ``enc1`` (full resolution),
  ``enc2`` (1/2), ``enc3`` (1/4, the bottleneck), ``dec3``, ``dec2``, ``dec1`` (skip
  connections from the encoder) and ``head`` (a 1x1 conv to one depth and three normal channels,
  and the merge convs of the next sub-network's input ``f + merge_features(dec1) +
  merge_predictions(depth, normal)``). Predictions: ``{"depth": [B, 1, S, S]`` (positive,
  softplus), ``"normal": [B, 3, S, S]}`` (unit length per pixel). ``model.sharing``:

  - ``single``: one sub-network, no recurrence (``stacks`` must be 1);
  - ``reuse``: one sub-network applied ``N`` times (convs and batchnorms reused);
  - ``reuse-new-bn``: ``N`` sub-networks whose convs read sub-network 0's weights
    (:func:`rpg_core.rpg.tying.is_tied`), each with its own batchnorms;
  - ``rpg``: ``N`` sub-networks; ``create_model`` generates the same block of every sub-network
    from one ring per block (the size of that block's convs), each sub-network with its own
    permutation, signs and batchnorms.

``sharing: rpg`` builds the plain network (``N`` sub-networks of ordinary convs, what
``create_model(..., plain=True)`` returns); ``create_model`` converts it with the rings of
:func:`rpg_core.spec.sharing_rpg` (``include: ["stacks.*"]``: the stem stays ordinary).

Parameters, as the paper counts them (every conv of a sub-network is bias-free: a sub-network's
parameters are its conv weights and its batchnorms): ``full``/``reuse`` cost one sub-network
(plus the stem) whatever ``N``; ``rpg`` the same conv (ring) count plus ``N - 1`` more sets of
the sub-network's batchnorms, as ``reuse-new-bn`` does; ``none`` ``N`` sub-networks. Every
sub-network has the same layers, so the last one also holds merge convs (the re-injection into
a next sub-network) that it never uses: under ``none`` and ``single`` they are parameters
without a gradient (hourglass width 1: 1,536 of a sub-network's 39,680 conv weights), counted
in ``none``'s total; under ``full``/``reuse`` earlier applications use them, under ``rpg`` they
are views of the ring.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..catalog.tasks import TASKS
from ..exceptions import RPGConfigError
from ..rpg.rpgify import is_generated
from ..rpg.tying import is_tied, tie_convs
from ..spec.model import ENCDEC_BLOCKS, default_stacks
from .factory import register_model
from .options import stacked_options

# this family's options, for create_model (rpg_core.models.options)
spec_options = stacked_options

__all__ = [
    "ENCDEC_CHANNELS",
    "HEATMAP_STRIDE",
    "HOURGLASS_CHANNELS",
    "HOURGLASS_DEPTH",
    "EncDecNet",
    "EncDecSubnet",
    "Hourglass",
    "HourglassNet",
    "HourglassSubnet",
    "Residual",
    "StackedNet",
    "StagedBatchNorm2d",
    "encdec",
    "hourglass",
]

log = logging.getLogger(__name__)

HEATMAP_STRIDE = 2  # hourglass: input size / heatmap size (the stem's stride)
HOURGLASS_DEPTH = 3  # hourglass: max-pool levels (64 px input: 32 px heatmaps, 4 px at the bottom)
HOURGLASS_CHANNELS = 32  # hourglass: feature channels at width 1
ENCDEC_CHANNELS = 16  # encdec: full-resolution channels at width 1 (x2 at 1/2, x4 at 1/4)
DEPTH_CHANNELS, NORMAL_CHANNELS = 1, 3

# sharing -> how ``stacks`` is laid out: "one" module applied N times, N "separate" modules,
# or N modules whose convs are "tied" to module 0's
_LAYOUT = {
    "none": "separate",
    "full": "one",
    "rpg": "separate",
    "single": "one",
    "reuse": "one",
    "reuse-new-bn": "tied",
}


def _channels(base: int, width: float) -> int:
    return max(2, round(base * width))


def _conv(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride, k // 2, bias=False)


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``x`` upsampled (nearest) to ``like``'s spatial size (any input size, odd ones too)."""
    return F.interpolate(x, size=like.shape[-2:], mode="nearest")


def _unit(v: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``v`` normalised to unit length along dim 1; ``(0, .., 0, 1)`` (facing the camera) where
    it is (near) zero, as it is wherever a pixel's features are all zero."""
    n = v.norm(dim=1, keepdim=True)
    facing = torch.zeros_like(v[:1, :, :1, :1])
    facing[:, -1] = 1.0
    return torch.where(n > eps, v / n.clamp_min(eps), facing)


class Residual(nn.Module):
    """Newell's residual block: pre-activation bottleneck (BN-ReLU-1x1, BN-ReLU-3x3, BN-ReLU-1x1
    to half the channels and back), identity shortcut."""

    def __init__(self, c: int) -> None:
        super().__init__()
        mid = max(1, c // 2)
        self.norm1 = nn.BatchNorm2d(c)
        self.conv1 = _conv(c, mid, 1)
        self.norm2 = nn.BatchNorm2d(mid)
        self.conv2 = _conv(mid, mid, 3)
        self.norm3 = nn.BatchNorm2d(mid)
        self.conv3 = _conv(mid, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        out = self.conv3(F.relu(self.norm3(out)))
        return x + out


class Hourglass(nn.Module):
    """One hourglass level: ``skip(x) + up(inner(down(maxpool(x))))`` upsampled; ``inner`` is
    the next level, a residual block at the bottom."""

    def __init__(self, c: int, depth: int) -> None:
        super().__init__()
        self.skip = Residual(c)
        self.down = Residual(c)
        self.inner: nn.Module = Hourglass(c, depth - 1) if depth > 1 else Residual(c)
        self.up = Residual(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = F.max_pool2d(x, 2, ceil_mode=True)
        low = self.up(self.inner(self.down(low)))
        return self.skip(x) + _up(low, x)


class HourglassSubnet(nn.Module):
    """A stacked-hourglass sub-network: hourglass, features, heatmaps, re-injection."""

    def __init__(self, c: int, joints: int, depth: int = HOURGLASS_DEPTH) -> None:
        super().__init__()
        self.hourglass = Hourglass(c, depth)
        self.features = nn.Sequential(
            Residual(c), _conv(c, c, 1), nn.BatchNorm2d(c), nn.ReLU(inplace=True)
        )
        self.heatmaps = _conv(c, joints, 1)
        self.merge_features = _conv(c, c, 1)
        self.merge_heatmaps = _conv(joints, c, 1)

    def forward(
        self, x: torch.Tensor, last: bool = False
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """The heatmaps and (unless ``last``) the next sub-network's input."""
        feats = self.features(self.hourglass(x))
        heat = self.heatmaps(feats)
        if last:
            return {"heatmaps": heat}, None
        return {"heatmaps": heat}, x + self.merge_features(feats) + self.merge_heatmaps(heat)


class _ConvBlock(nn.Module):
    """Two conv-BN-ReLU (the first with ``stride``): an encdec block's layers."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv(cin, cout, 3, stride)
        self.norm1 = nn.BatchNorm2d(cout)
        self.conv2 = _conv(cout, cout, 3)
        self.norm2 = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm2(self.conv2(F.relu(self.norm1(self.conv1(x))))))


class _EncDecHead(nn.Module):
    """Depth and normals from the decoder's features, and the merge convs of the next input."""

    def __init__(self, c: int) -> None:
        super().__init__()
        out = DEPTH_CHANNELS + NORMAL_CHANNELS
        self.predict = _conv(c, out, 1)
        self.merge_features = _conv(c, c, 1)
        self.merge_predictions = _conv(out, c, 1)

    def forward(
        self, x: torch.Tensor, feats: torch.Tensor, last: bool
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        raw = self.predict(feats)
        depth = F.softplus(raw[:, :DEPTH_CHANNELS])
        normal = _unit(raw[:, DEPTH_CHANNELS:])
        out = {"depth": depth, "normal": normal}
        if last:
            return out, None
        preds = torch.cat([depth, normal], 1)
        return out, x + self.merge_features(feats) + self.merge_predictions(preds)


class EncDecSubnet(nn.Module):
    """An encoder-decoder sub-network (U-Net skips); its blocks are :data:`ENCDEC_BLOCKS`."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.enc1 = _ConvBlock(c, c)
        self.enc2 = _ConvBlock(c, 2 * c, stride=2)
        self.enc3 = _ConvBlock(2 * c, 4 * c, stride=2)
        self.dec3 = _ConvBlock(4 * c, 2 * c)
        self.dec2 = _ConvBlock(4 * c, c)  # [dec3 up, enc2]
        self.dec1 = _ConvBlock(2 * c, c)  # [dec2 up, enc1]
        self.head = _EncDecHead(c)
        assert tuple(n for n, _ in self.named_children()) == ENCDEC_BLOCKS

    def forward(
        self, x: torch.Tensor, last: bool = False
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """Depth and normals and (unless ``last``) the next sub-network's input."""
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        d3 = self.dec3(self.enc3(e2))
        d2 = self.dec2(torch.cat([_up(d3, e2), e2], 1))
        d1 = self.dec1(torch.cat([_up(d2, e1), e1], 1))
        return self.head(x, d1, last)


class StagedBatchNorm2d(nn.BatchNorm2d):
    """A batchnorm shared by ``stages`` applications of one sub-network (``sharing: full``):
    one weight and bias (parameters: shared), one set of running statistics per application
    (buffers ``running_mean``/``running_var`` ``[stages, C]``, ``num_batches_tracked``
    ``[stages]``). The parent sets :attr:`stage` before each application."""

    def __init__(self, num_features: int, stages: int) -> None:
        super().__init__(num_features)
        self.stages = stages
        self.stage = 0
        self.register_buffer("running_mean", torch.zeros(stages, num_features))
        self.register_buffer("running_var", torch.ones(stages, num_features))
        self.register_buffer("num_batches_tracked", torch.zeros(stages, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.stage
        assert self.running_mean is not None and self.running_var is not None
        assert self.num_batches_tracked is not None
        factor = 0.0
        if self.training:
            self.num_batches_tracked[k] += 1
            # momentum None (precise batchnorm): a cumulative average of this stage's batches
            factor = self.momentum or 1.0 / float(self.num_batches_tracked[k])
        return F.batch_norm(
            x,
            self.running_mean[k],
            self.running_var[k],
            self.weight,
            self.bias,
            self.training,
            factor,
            self.eps,
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, stages={self.stages}"


def _stage_norms(module: nn.Module, stages: int) -> None:
    """Replace every BatchNorm2d under ``module`` by a :class:`StagedBatchNorm2d`."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, StagedBatchNorm2d):
            setattr(module, name, StagedBatchNorm2d(child.num_features, stages))
        else:
            _stage_norms(child, stages)


class StackedNet(nn.Module):
    """A stem and ``stacks`` sub-networks laid out as ``sharing`` says (see the module doc).

    ``stacks`` (the ModuleList) holds one module for ``full``/``reuse``/``single`` and
    ``num_stacks`` otherwise; ``num_stacks`` is how many times a sub-network is applied.
    """

    arch = ""  # the registered name (error messages)
    task = ""  # its task in rpg_core.catalog.tasks (the sharing values it takes)

    def __init__(
        self,
        stem: nn.Module,
        make_subnet: Callable[[], nn.Module],
        stacks: int | None,
        sharing: str,
    ) -> None:
        super().__init__()
        stacks = default_stacks(sharing) if stacks is None else stacks
        allowed = TASKS[self.task].sharing
        if sharing not in allowed:
            raise RPGConfigError(
                f"model.sharing: arch {self.arch!r} takes sharing {' | '.join(allowed)}, "
                f"got {sharing!r}"
            )
        if isinstance(stacks, bool) or not isinstance(stacks, int) or stacks < 1:
            raise RPGConfigError(f"model.stacks must be an integer >= 1, got {stacks!r}")
        if sharing == "single" and stacks != 1:
            raise RPGConfigError(
                f"model.stacks: sharing single is one sub-network; set stacks to 1, or use "
                f"sharing reuse, reuse-new-bn or rpg for {stacks}"
            )
        self.sharing = sharing
        self.num_stacks = stacks
        layout = _LAYOUT[sharing]
        self.stem = stem
        count = 1 if layout == "one" else stacks
        self.stacks = nn.ModuleList(make_subnet() for _ in range(count))
        if layout == "tied":
            for sub in self.stacks[1:]:  # its own batchnorms, sub-network 0's convs
                tie_convs(sub, self.stacks[0])
        if sharing == "full" and stacks > 1:  # CPM: every weight shared, statistics per stage
            _stage_norms(self.stacks[0], stacks)
        self._staged = [m for m in self.stacks.modules() if isinstance(m, StagedBatchNorm2d)]
        self.init_weights()
        log.debug("%s: %d sub-networks, sharing %s", self.arch, stacks, sharing)

    def init_weights(self) -> None:
        """Kaiming-normal (fan_out) ordinary convs, unit batchnorms; generated convs (their
        ring) and tied convs (their source's weight) are left alone."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and not is_generated(m) and not is_tied(m):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def subnet(self, i: int) -> nn.Module:
        """The module that makes application ``i`` (module 0 when one is applied N times)."""
        return self.stacks[i if len(self.stacks) > 1 else 0]

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        f = self.stem(x)
        outs: list[dict[str, torch.Tensor]] = []
        for i in range(self.num_stacks):
            for norm in self._staged:
                norm.stage = i
            out, nxt = self.subnet(i)(f, last=i == self.num_stacks - 1)
            outs.append(out)
            if nxt is not None:
                f = nxt
        return outs


def _check_variant(variant: str) -> None:
    if variant not in ("cifar", "imagenet"):
        raise RPGConfigError(f"model.variant must be 'cifar' or 'imagenet', got {variant!r}")


class HourglassNet(StackedNet):
    """Stacked hourglass for pose: heatmaps at 1/:data:`HEATMAP_STRIDE` of the input."""

    arch = "hourglass"
    task = "pose"

    def __init__(
        self,
        *,
        variant: str = "cifar",
        width: float = 1.0,
        num_classes: int = 16,
        in_channels: int = 3,
        stacks: int | None = None,
        sharing: str = "rpg",
    ) -> None:
        _check_variant(variant)  # both variants build the same network
        c = _channels(HOURGLASS_CHANNELS, width)
        stem = nn.Sequential(
            nn.Conv2d(in_channels, c, 7, HEATMAP_STRIDE, 3, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
            Residual(c),
        )
        super().__init__(stem, lambda: HourglassSubnet(c, num_classes), stacks, sharing)
        self.channels = c
        self.num_joints = num_classes


class EncDecNet(StackedNet):
    """Stacked encoder-decoders for depth and surface normals at the input's resolution."""

    arch = "encdec"
    task = "multitask"

    def __init__(
        self,
        *,
        variant: str = "cifar",
        width: float = 1.0,
        num_classes: int | None = None,
        in_channels: int = 3,
        stacks: int | None = None,
        sharing: str = "rpg",
    ) -> None:
        _check_variant(variant)  # both variants build the same network
        del num_classes  # the outputs are fixed: 1 depth and 3 normal channels
        c = _channels(ENCDEC_CHANNELS, width)
        stem = nn.Sequential(
            _conv(in_channels, c, 3),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
            _conv(c, c, 3),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
        )
        super().__init__(stem, lambda: EncDecSubnet(c), stacks, sharing)
        self.channels = c


@register_model("hourglass")
def hourglass(**kwargs: Any) -> nn.Module:
    """Stacked hourglass (pose, paper Table 4): :class:`HourglassNet` (``stacks`` sub-networks,
    ``sharing`` none | full | rpg, ``num_classes`` joints)."""
    return HourglassNet(**kwargs)


@register_model("encdec")
def encdec(**kwargs: Any) -> nn.Module:
    """Stacked encoder-decoders (depth + normals, paper Table 5): :class:`EncDecNet` (``stacks``
    sub-networks, ``sharing`` single | reuse | reuse-new-bn | rpg)."""
    return EncDecNet(**kwargs)
