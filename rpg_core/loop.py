"""The one training loop: the steps of an epoch and an evaluation pass over batches.

:func:`rpg_core.engine.train` runs every epoch of a spec through :func:`train_steps` (with its
callbacks, schedule, autocast and checkpoints around it), and so does the fine-tuning of a pruned
network (:func:`rpg_core.analysis.pruning.finetune`); :func:`evaluate_batches` is the evaluation
of both.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .exceptions import RPGConfigError, RPGTrainingError

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RPGConfigError(f"train.device is {name!r} but CUDA is not available; use cpu or auto")
    return torch.device(name)


@contextlib.contextmanager
def deterministic(enabled: bool, device: torch.device) -> Iterator[None]:
    """Deterministic mode for the run's duration (restored afterwards).

    CPU: ``torch.use_deterministic_algorithms`` (warn-only where an op has no deterministic
    kernel). CUDA: deterministic cuDNN without autotuning, but the fast (atomic) scatter-add in
    the ring's backward: bit-exactness there would cost more than it is worth.
    """
    prev = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_bench = torch.backends.cudnn.benchmark
    prev_cudnn = torch.backends.cudnn.deterministic
    try:
        if device.type == "cuda":
            torch.backends.cudnn.deterministic = enabled
            torch.backends.cudnn.benchmark = not enabled
        elif enabled:
            torch.use_deterministic_algorithms(True, warn_only=True)
        yield
    finally:
        torch.use_deterministic_algorithms(prev, warn_only=prev_warn)
        torch.backends.cudnn.benchmark = prev_bench
        torch.backends.cudnn.deterministic = prev_cudnn


def check_finite(loss: float, epoch: int, step: int) -> None:
    if not math.isfinite(loss):
        what = "NaN" if math.isnan(loss) else "inf"
        raise RPGTrainingError(
            f"loss became {what} at epoch {epoch}, step {step}; lower train.lr or check the data"
        )


@dataclass
class EpochSums:
    """Running sums of an epoch: loss x images, correct predictions, images."""

    loss: float = 0.0
    correct: float = 0.0
    images: int = 0

    @property
    def mean_loss(self) -> float:
        return self.loss / max(self.images, 1)

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.images, 1)


def _same(x: torch.Tensor) -> torch.Tensor:
    return x


def train_steps(
    model: nn.Module,
    batches: Batches,
    optimizer: torch.optim.Optimizer,
    *,
    scheduler: Any = None,
    epoch: int = 1,
    label_smoothing: float = 0.0,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    prepare: Callable[[torch.Tensor], torch.Tensor] = _same,
    before_step: Callable[[int], None] | None = None,
    after_step: Callable[[int, float, EpochSums], None] | None = None,
) -> EpochSums:
    """One pass of cross-entropy steps over ``batches``; ``epoch`` (1-based) names it in errors.

    ``scheduler`` (if any) steps after every optimizer step. ``before_step(step)`` runs before
    each step (raise to stop); ``after_step(step, lr, sums)`` after it, with the learning rate
    the step used. Raises RPGTrainingError when the loss becomes NaN or inf.
    """
    model.train()
    sums = EpochSums()
    for step, (x, y) in enumerate(batches, start=1):
        if before_step is not None:
            before_step(step)
        with autocast():
            logits = model(prepare(x))
            y = y.to(logits.device)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
        value = float(loss.item())
        check_finite(value, epoch, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        sums.loss += value * len(y)
        sums.correct += float((logits.argmax(1) == y).sum().item())
        sums.images += len(y)
        if after_step is not None:
            after_step(step, lr, sums)
    return sums


def evaluate_batches(
    model: nn.Module,
    batches: Batches,
    *,
    top5: bool = False,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    prepare: Callable[[torch.Tensor], torch.Tensor] = _same,
    allow_empty: bool = True,
) -> dict[str, float]:
    """``val_loss`` and ``val_acc`` (top-1) of ``model`` over ``batches`` (``val_top5`` with
    ``top5``), without gradients; leaves the model in eval mode. No batches: zeros, or with
    ``allow_empty=False`` an RPGConfigError."""
    model.eval()
    loss_sum, top1, top5_hits, n = 0.0, 0.0, 0.0, 0
    with torch.no_grad():
        for x, y in batches:
            with autocast():
                logits = model(prepare(x)).float()
            y = y.to(logits.device)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum").item())
            top1 += float((logits.argmax(1) == y).sum().item())
            if top5:
                top = logits.topk(5, dim=1).indices
                top5_hits += float((top == y[:, None]).any(1).sum().item())
            n += len(y)
    if n == 0 and not allow_empty:
        raise RPGConfigError("loader: no images to evaluate")
    out = {"val_loss": loss_sum / max(n, 1), "val_acc": top1 / max(n, 1)}
    if top5:
        out["val_top5"] = top5_hits / max(n, 1)
    return out
