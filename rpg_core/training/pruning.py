"""Structured L1 pruning of RPG networks (paper Appendix A, Table 7).

The generated kernels are materialised into a plain network, then in each residual block the
output filters of ``conv1`` with the lowest L1 norm are removed, with the matching ``bn1``
channels and ``conv2`` input channels. The block's output width is untouched, so the residual
additions stay valid. Every block loses the same share of its ``conv1`` filters (rounded to whole
filters, at least one kept), chosen so that the backbone (conv weights except the stem) shrinks by
the asked fraction, to within one filter per block.

A pruning job is an experiment like any other: :class:`rpg_core.spec.PruneSpec` names the run
it prunes, and the engine fine-tunes the pruned network for ``train.epochs``.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..exceptions import RPGConfigError
from ..models.blocks import filter_cost, is_prunable_block, prunable_blocks
from ..rpg.params import count_macs, count_params
from ..rpg.rpgify import materialize, rings
from ..spec import MAX_PRUNE_FRACTION, PruneSpec
from ..stopping import StopCheck, check_stop, checked
from .loop import Batches, evaluate_batches, train_steps

log = logging.getLogger(__name__)

MAX_FRACTION = MAX_PRUNE_FRACTION
__all__ = ["MAX_FRACTION", "PruneSpec"]  # re-exported: PruneSpec is a spec section


@dataclass(frozen=True)
class BlockPlan:
    """How many ``conv1`` filters one block keeps."""

    block: str
    channels: int
    removed: int
    cost: int  # backbone weights removed with each filter (conv1 row + conv2 column)

    @property
    def kept(self) -> int:
        return self.channels - self.removed


@dataclass(frozen=True)
class PruneReport:
    """Sizes before and after. MACs are multiply-accumulates of conv and linear layers per image."""

    fraction_asked: float
    fraction_removed: float
    backbone_before: int
    backbone_after: int
    total_before: int
    total_after: int
    macs_before: int
    macs_after: int
    input_size: tuple[int, int, int]
    source_ring_params: int
    blocks: tuple[BlockPlan, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return {
            "fraction_asked": self.fraction_asked,
            "fraction_removed": self.fraction_removed,
            "backbone_before": self.backbone_before,
            "backbone_after": self.backbone_after,
            "total_before": self.total_before,
            "total_after": self.total_after,
            "macs_before": self.macs_before,
            "macs_after": self.macs_after,
            "macs_ratio": self.macs_after / self.macs_before if self.macs_before else None,
            "params_ratio": self.total_after / self.total_before if self.total_before else None,
            "input_size": list(self.input_size),
            "source_ring_params": self.source_ring_params,
            "blocks": [
                {"block": b.block, "channels": b.channels, "kept": b.kept, "removed": b.removed}
                for b in self.blocks
            ],
        }


@dataclass(frozen=True)
class PruneResult:
    model: nn.Module
    report: PruneReport


# --- FLOPs ---------------------------------------------------------------------------------------
def _stem(model: nn.Module) -> nn.Conv2d | None:
    return next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)


def _default_input_size(model: nn.Module) -> tuple[int, int, int]:
    stem = _stem(model)
    return (stem.in_channels if stem is not None else 3, 32, 32)


# --- planning ------------------------------------------------------------------------------------
def _parts(block: nn.Module) -> tuple[nn.Conv2d, nn.BatchNorm2d, nn.Conv2d]:
    c1, bn, c2 = block.conv1, block.bn1, block.conv2
    assert isinstance(c1, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
    assert isinstance(c2, nn.Conv2d)
    return c1, bn, c2


_is_block = is_prunable_block  # rpg_core.models.blocks: below training, for the budget checks
_cost = filter_cost


def _uniform_share(channels: list[int], costs: list[int], target: float) -> list[float]:
    """Filters to remove per block (real numbers): the same share of every block's filters,
    capped at all but one filter (water filling: capped blocks pass their excess on)."""
    fixed: dict[int, float] = {}
    while True:
        free = [i for i in range(len(channels)) if i not in fixed]
        if not free:
            return [fixed[i] for i in range(len(channels))]
        left = target - sum(fixed[i] * costs[i] for i in fixed)
        share = left / sum(channels[i] * costs[i] for i in free)
        over = [i for i in free if share * channels[i] > channels[i] - 1]
        if not over:
            return [fixed.get(i, share * channels[i]) for i in range(len(channels))]
        for i in over:
            fixed[i] = float(channels[i] - 1)


def plan_pruning(blocks: list[tuple[str, nn.Module]], target: float) -> list[BlockPlan]:
    """Filters to remove per block so that the removed weights come closest to ``target``."""
    channels = [_parts(b)[0].out_channels for _, b in blocks]
    costs = [_cost(b) for _, b in blocks]
    return plan_counts([n for n, _ in blocks], channels, costs, target)


def plan_counts(
    names: list[str], channels: list[int], costs: list[int], target: float
) -> list[BlockPlan]:
    """:func:`plan_pruning` on counts: blocks ``names`` with ``channels`` (live) filters, each
    removed filter taking ``costs[i]`` backbone weights; the removed weights come closest to
    ``target`` (at least one filter kept per block; nothing removed for ``target <= 0``)."""
    caps = [c - 1 for c in channels]
    if target <= 0:
        return [BlockPlan(n, channels[i], 0, costs[i]) for i, n in enumerate(names)]
    exact = _uniform_share(channels, costs, target)
    removed = [max(0, min(caps[i], math.floor(x))) for i, x in enumerate(exact)]
    deficit = target - sum(r * c for r, c in zip(removed, costs, strict=True))
    open_ = {i for i in range(len(names)) if removed[i] < caps[i]}
    while open_:
        i = min(open_, key=lambda j: abs(deficit - costs[j]))
        if abs(deficit - costs[i]) >= abs(deficit):
            break
        removed[i] += 1
        deficit -= costs[i]
        open_.discard(i)
    return [
        BlockPlan(block=n, channels=channels[i], removed=removed[i], cost=costs[i])
        for i, n in enumerate(names)
    ]


# --- surgery -------------------------------------------------------------------------------------
def _l1_keep(conv: nn.Conv2d, kept: int) -> torch.Tensor:
    norms = conv.weight.detach().abs().sum(dim=(1, 2, 3))
    order = torch.argsort(norms, descending=True, stable=True)
    return torch.sort(order[:kept]).values


def _conv_like(conv: nn.Conv2d, in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(
        in_channels,
        out_channels,
        conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )


def _bn_subset(bn: nn.BatchNorm2d, keep: torch.Tensor) -> nn.BatchNorm2d:
    new = nn.BatchNorm2d(
        len(keep),
        eps=bn.eps,
        momentum=bn.momentum,
        affine=bn.affine,
        track_running_stats=bn.track_running_stats,
        device=keep.device,
    )
    state = {k: (v[keep] if v.dim() == 1 else v) for k, v in bn.state_dict().items()}
    new.load_state_dict(state)
    return new


@torch.no_grad()
def _prune_block(block: nn.Module, kept: int) -> None:
    c1, bn, c2 = _parts(block)
    keep = _l1_keep(c1, kept).to(c1.weight.device)
    new1 = _conv_like(c1, c1.in_channels, kept)
    new1.weight.copy_(c1.weight[keep])
    if c1.bias is not None and new1.bias is not None:
        new1.bias.copy_(c1.bias[keep])
    new2 = _conv_like(c2, kept, c2.out_channels)
    new2.weight.copy_(c2.weight[:, keep])
    if c2.bias is not None and new2.bias is not None:
        new2.bias.copy_(c2.bias)
    block.bn1 = _bn_subset(bn, keep)
    block.conv1, block.conv2 = new1, new2


def prune_model(
    model: nn.Module,
    fraction: float,
    *,
    input_size: tuple[int, int, int] | None = None,
    should_stop: StopCheck | None = None,
) -> PruneResult:
    """Prune ``fraction`` of the backbone of ``model`` (RPG or plain); ``model`` is not changed.

    Returns the smaller plain network and a report (parameters and MACs before and after).
    ``input_size`` (C, H, W) sets the image the MACs are counted for (default: the stem's
    channels at 32x32). ``should_stop`` is checked between the steps and before each block
    (raises ``rpg_core.stopping.Stopped``).
    """
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise RPGConfigError(f"fraction must be a number in (0, {MAX_FRACTION}], got {fraction!r}")
    if not 0 < fraction <= MAX_FRACTION:
        raise RPGConfigError(f"fraction must be in (0, {MAX_FRACTION}], got {fraction}")
    size = input_size or _default_input_size(model)
    check_stop(should_stop)
    plain = materialize(model)
    plain.__dict__.pop("rpg_spec", None)  # the pruned shapes no longer follow the spec
    check_stop(should_stop)
    blocks = prunable_blocks(plain)
    if not blocks:
        raise RPGConfigError(
            "model has no prunable residual blocks (modules with conv1, bn1 and conv2)"
        )
    before = count_params(plain)
    macs_before = count_macs(plain, size)
    check_stop(should_stop)
    target = fraction * before.backbone
    plans = plan_pruning(blocks, target)
    reachable = sum((p.channels - 1) * p.cost for p in plans)
    if reachable < target - max(p.cost for p in plans):
        raise RPGConfigError(
            f"fraction {fraction} is too high for this model: pruning conv1 filters can remove "
            f"at most {reachable / before.backbone:.3f} of the backbone"
        )
    for (_, block), plan in zip(blocks, plans, strict=True):
        check_stop(should_stop)
        _prune_block(block, plan.kept)
    check_stop(should_stop)
    after = count_params(plain)
    plain.rpg_pruned = {  # type: ignore[assignment]
        "source_spec": copy.deepcopy(model.__dict__.get("rpg_spec")),
        "kept": {p.block: p.kept for p in plans},
    }
    report = PruneReport(
        fraction_asked=float(fraction),
        fraction_removed=1.0 - after.backbone / before.backbone,
        backbone_before=before.backbone,
        backbone_after=after.backbone,
        total_before=before.total,
        total_after=after.total,
        macs_before=macs_before,
        macs_after=count_macs(plain, size),
        input_size=tuple(size),  # type: ignore[arg-type]
        source_ring_params=sum(r.weight.numel() for r in rings(model).values()),
        blocks=tuple(plans),
    )
    log.info(
        "pruned %.3f of the backbone (asked %.3f): MACs %d -> %d",
        report.fraction_removed,
        fraction,
        report.macs_before,
        report.macs_after,
    )
    return PruneResult(plain, report)


def rebuild_pruned(model: nn.Module, kept: dict[str, int]) -> nn.Module:
    """A plain copy of ``model`` with each named block narrowed to ``kept[block]`` conv1 filters:
    the architecture of a pruned network, to load its saved ``state_dict`` into.

    ``kept`` is ``pruned.rpg_pruned["kept"]`` (also in the report); ``model`` is the source
    network rebuilt from its spec (``rpg_pruned["source_spec"]``).
    """
    plain = materialize(model)
    plain.__dict__.pop("rpg_spec", None)
    blocks = dict(prunable_blocks(plain))
    unknown = sorted(set(kept) - set(blocks))
    if unknown:
        raise RPGConfigError(f"kept: no prunable block named {unknown[0]!r} in this model")
    for name, count in kept.items():
        channels = _parts(blocks[name])[0].out_channels
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= channels:
            raise RPGConfigError(f"kept[{name!r}] must be an int in [1, {channels}], got {count!r}")
        _prune_block(blocks[name], count)
    plain.rpg_pruned = {"source_spec": None, "kept": dict(kept)}  # type: ignore[assignment]
    return plain


# --- fine-tuning (the engine's loop: rpg_core.training.loop) ------------------------------------------------
def evaluate(model: nn.Module, loader: Batches, should_stop: StopCheck | None = None) -> float:
    """Top-1 accuracy of ``model`` over ``loader``'s (images, labels) batches (its mode kept);
    ``should_stop`` is checked between batches."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    batches = checked(loader, should_stop)
    try:
        metrics = evaluate_batches(
            model, batches, prepare=lambda x: x.to(device), allow_empty=False
        )
    finally:
        model.train(was_training)
    return metrics["val_acc"]


def finetune(
    model: nn.Module,
    loader: Batches,
    *,
    epochs: int,
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    should_stop: StopCheck | None = None,
) -> list[float]:
    """SGD with cosine decay over ``epochs`` passes of ``loader`` (the engine's training steps);
    returns the mean loss per epoch. Raises RPGTrainingError when the loss becomes NaN or inf,
    ``rpg_core.stopping.Stopped`` when ``should_stop`` (checked before each step) says so."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise RPGConfigError(f"epochs must be an int >= 0, got {epochs!r}")
    if epochs == 0:
        return []
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    losses = []
    for epoch in range(1, epochs + 1):
        sums = train_steps(
            model,
            loader,
            opt,
            epoch=epoch,
            prepare=lambda x: x.to(device),
            before_step=lambda _step: check_stop(should_stop),
        )
        sched.step()  # per epoch
        losses.append(sums.mean_loss)
    model.eval()
    return losses


def run_prune(
    model: nn.Module,
    spec: PruneSpec,
    *,
    train_loader: Batches | None = None,
    val_loader: Batches | None = None,
    input_size: tuple[int, int, int] | None = None,
    lr: float = 0.01,
    finetune_epochs: int = 0,
    should_stop: StopCheck | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Prune ``model`` as ``spec`` says, fine-tune for ``finetune_epochs``, and measure.

    (The service's pruning jobs run through :func:`rpg_core.training.engine.train`, which fine-tunes for
    ``train.epochs``; this is the library-level helper.)

    Returns the pruned network and a JSON-ready dict: the report plus ``accuracy_before``,
    ``accuracy_pruned`` (before fine-tuning) and ``accuracy_after`` when ``val_loader`` is given,
    and ``finetune_losses``. ``spec.source`` is resolved by the caller (it loads ``model``).
    ``should_stop`` is checked throughout (raises ``rpg_core.stopping.Stopped``).
    """
    if finetune_epochs and train_loader is None:
        raise RPGConfigError("finetune_epochs > 0 needs a train_loader")
    out: dict[str, Any] = {"spec": spec.model_dump()}
    if val_loader is not None:
        out["accuracy_before"] = evaluate(model, val_loader, should_stop)
    result = prune_model(model, spec.fraction, input_size=input_size, should_stop=should_stop)
    out["report"] = result.report.as_dict()
    if val_loader is not None:
        out["accuracy_pruned"] = evaluate(result.model, val_loader, should_stop)
    losses = (
        finetune(result.model, train_loader, epochs=finetune_epochs, lr=lr, should_stop=should_stop)
        if train_loader is not None
        else []
    )
    out["finetune_losses"] = losses
    if val_loader is not None:
        out["accuracy_after"] = evaluate(result.model, val_loader, should_stop)
    return result.model, out
