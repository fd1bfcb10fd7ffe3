"""The one training loop: the steps of an epoch and an evaluation pass over batches.

:func:`rpg_core.training.engine.train` runs every epoch of a spec through :func:`train_steps` (with its
callbacks, schedule, autocast and checkpoints around it), and so does the fine-tuning of a pruned
network (:func:`rpg_core.training.pruning.finetune`); :func:`evaluate_batches` is the evaluation
of both.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..exceptions import RPGConfigError, RPGTrainingError

if TYPE_CHECKING:
    from ..tasks import Task

Batches = Iterable[tuple[torch.Tensor, Any]]  # (images, targets: labels or a dict of tensors)


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
    """Running sums of an epoch: loss x images, the task's train sums (classification:
    correct predictions), images."""

    loss: float = 0.0
    correct: float = 0.0
    images: int = 0
    tracks_accuracy: bool = True  # False for a task without a training metric (pose, ...)

    @property
    def mean_loss(self) -> float:
        return self.loss / max(self.images, 1)

    @property
    def accuracy(self) -> float | None:
        if not self.tracks_accuracy:
            return None
        return self.correct / max(self.images, 1)


def _same(x: torch.Tensor) -> torch.Tensor:
    return x


def _default_task(task: Task | None) -> Task:
    from ..tasks import get_task

    return task if task is not None else get_task("classification")


def _to(targets: Any, device: torch.device) -> Any:
    if isinstance(targets, dict):
        return {k: v.to(device) for k, v in targets.items()}
    return targets.to(device)


def _device_of(outputs: Any) -> torch.device:
    first = outputs
    while not isinstance(first, torch.Tensor):
        first = first[0] if isinstance(first, list | tuple) else next(iter(first.values()))
    return first.device


def _float(outputs: Any) -> Any:
    if isinstance(outputs, torch.Tensor):
        return outputs.float()
    if isinstance(outputs, dict):
        return {k: _float(v) for k, v in outputs.items()}
    return [_float(o) for o in outputs]


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
    task: Task | None = None,
    loss_scale: Callable[[int, int], float] | None = None,
) -> EpochSums:
    """One pass of the task's loss (default: classification, cross-entropy) over ``batches``;
    ``epoch`` (1-based) names it in errors.

    ``scheduler`` (if any) steps after every optimizer step. ``before_step(step)`` runs before
    each step (raise to stop); ``after_step(step, lr, sums)`` after it, with the learning rate
    the step used. ``loss_scale(step, images)``: a factor on the loss that is differentiated
    (a data-parallel rank's share of the global batch); the sums keep the unscaled loss.
    Raises RPGTrainingError when the loss becomes NaN or inf.
    """
    task = _default_task(task)
    model.train()
    sums = EpochSums(tracks_accuracy=task.info.train_metric is not None)
    for step, (x, y) in enumerate(batches, start=1):
        if before_step is not None:
            before_step(step)
        with autocast():
            outputs = model(prepare(x))
            y = _to(y, _device_of(outputs))
            loss = task.loss(_float(outputs), y, label_smoothing=label_smoothing)
        value = float(loss.item())
        check_finite(value, epoch, step)
        optimizer.zero_grad(set_to_none=True)
        if loss_scale is not None:
            loss = loss * loss_scale(step, task.batch_size(y))
        loss.backward()
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        n = task.batch_size(y)
        sums.loss += value * n
        sums.correct += task.train_sums(outputs, y).get("correct", 0.0)
        sums.images += n
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
    task: Task | None = None,
    reduce: Callable[[dict[str, float], int], tuple[dict[str, float], int]] | None = None,
) -> dict[str, float]:
    """``val_loss`` and the task's metrics ``val_<key>`` of ``model`` over ``batches``
    (classification: ``val_acc``, top-1, and ``val_top5`` with ``top5``), without gradients;
    leaves the model in eval mode. No batches: zeros, or with ``allow_empty=False`` an
    RPGConfigError. ``reduce``: combines the sums with other processes' (a data-parallel run's
    ranks, each over its shard)."""
    task = _default_task(task)
    model.eval()
    totals: dict[str, float] = {}
    n = 0
    with torch.no_grad():
        for x, y in batches:
            with autocast():
                outputs = _float(model(prepare(x)))
            y = _to(y, _device_of(outputs))
            for k, v in task.eval_sums(outputs, y, top5=top5).items():
                totals[k] = totals.get(k, 0.0) + v
            n += task.batch_size(y)
    if reduce is not None:
        totals, n = reduce(totals, n)
    if n == 0 and not allow_empty:
        raise RPGConfigError("loader: no images to evaluate")
    return task.finish(totals, n, top5=top5)
