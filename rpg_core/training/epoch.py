"""One epoch of a run: the run's mutable state, the training pass (through
:func:`rpg_core.training.loop.train_steps`) with its callbacks, precise batchnorm, and evaluation."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..data import BatchLoader, Datasets, default_data_root
from ..spec import PRECISE_BN_STEPS, ExperimentSpec
from ..stopping import StopCheck, Stopped, callbacks_stop, checked
from ..tasks import Task, get_task
from .loop import EpochSums, evaluate_batches, train_steps
from .precise_bn import recompute_batchnorm

if TYPE_CHECKING:
    from .distributed import Ranks


def _notify(callbacks: Sequence[Any], method: str, *args: Any) -> None:
    for cb in callbacks:
        fn = getattr(cb, method, None)
        if fn is not None:
            fn(*args)


def _stop_requested(callbacks: Sequence[Any]) -> bool:
    return any(bool(getattr(cb, "should_stop", lambda: False)()) for cb in callbacks)


def _never() -> bool:
    return False


class _Stop(Stopped):
    """Raised inside an epoch when a callback asked to stop."""


@dataclass
class _Run:
    """The mutable state of one run."""

    spec: ExperimentSpec
    hp: dict[str, Any]
    data: Datasets
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    train_loader: BatchLoader
    val_loader: BatchLoader
    device: torch.device
    callbacks: Sequence[Any]
    step_interval_s: float
    history: list[dict[str, float]] = field(default_factory=list)
    images: int = 0
    train_seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    last_notify: float = -math.inf
    start_epoch: int = 0
    prune: dict[str, Any] | None = None  # a pruning job's report
    dense_reused: bool = False  # a pruning method's dense network came from the dense cache
    last_lr: float = 0.0  # the learning rate of the last step taken
    data_root: Path = field(default_factory=default_data_root)
    ood: dict[str, float] | None = None  # eval.ood's accuracies after training
    task: Task = field(default_factory=lambda: get_task("classification"))
    ranks: Ranks | None = None  # a data-parallel run's rank (rpg_core.training.distributed)
    train_model: nn.Module | None = None  # what the steps call: DDP around ``model``, or it

    @property
    def should_stop(self) -> StopCheck:
        """The callbacks' stop request, for the loops outside the training steps
        (evaluation, OOD evaluation: :mod:`rpg_core.stopping`). A data-parallel rank stops
        only where every rank does (:meth:`stop_now`, steps and epochs): never here."""
        if self.ranks is not None:
            return _never
        return callbacks_stop(self.callbacks)

    def stop_now(self) -> bool:
        """Whether to stop before the next step (or epoch): the callbacks' answer; in a
        data-parallel run rank 0's, broadcast to every rank."""
        if self.ranks is None:
            return _stop_requested(self.callbacks)
        return self.ranks.decide(lambda: _stop_requested(self.callbacks))

    @property
    def total_steps(self) -> int:
        return len(self.train_loader) * self.hp["epochs"]

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda":
            return x.contiguous(memory_format=torch.channels_last)
        return x


# --- one epoch ----------------------------------------------------------------------------------
def _step_metrics(run: _Run, epoch: int, step: int, sums: EpochSums, t0: float) -> dict[str, Any]:
    n_steps = len(run.train_loader)
    done = epoch * n_steps + step
    elapsed = time.perf_counter() - t0
    rate = step / elapsed if elapsed > 0 else 0.0
    remaining = run.total_steps - done
    return {
        "epoch": epoch + 1,
        "epochs": run.hp["epochs"],
        "step_in_epoch": step,
        "steps_per_epoch": n_steps,
        "loss": sums.mean_loss,
        **({"acc": sums.accuracy} if sums.accuracy is not None else {}),
        "lr": run.optimizer.param_groups[0]["lr"],
        "eta_s": remaining / rate if rate > 0 else float("nan"),
    }


def train_epoch(run: _Run, epoch: int) -> tuple[float, float | None]:
    """One pass over the training set; (mean loss, accuracy: None for a task that tracks no
    training metric). ``epoch`` is 0-based."""
    t0 = time.perf_counter()
    n_steps = len(run.train_loader)

    def before_step(step: int) -> None:
        if run.stop_now():
            raise _Stop

    def after_step(step: int, lr: float, sums: EpochSums) -> None:
        run.last_lr = lr
        now = time.perf_counter()
        if now - run.last_notify >= run.step_interval_s or step == n_steps:
            run.last_notify = now
            metrics = _step_metrics(run, epoch, step, sums, t0)
            _notify(run.callbacks, "on_step", epoch * n_steps + step, run.total_steps, metrics)

    loss_scale = None
    if run.ranks is not None:
        world, loader = run.ranks.world, run.train_loader

        def loss_scale(step: int, n: int) -> float:
            # DDP averages the ranks' gradients: weighted so, the global batch's mean gradient
            return n * world / loader.global_sizes[step - 1]

    sums = train_steps(
        run.train_model if run.train_model is not None else run.model,
        run.train_loader.epoch(epoch),
        run.optimizer,
        scheduler=run.scheduler,
        epoch=epoch + 1,
        label_smoothing=run.hp["label_smoothing"],
        autocast=run.autocast,
        prepare=run.prepare,
        before_step=before_step,
        after_step=after_step,
        task=run.task,
        loss_scale=loss_scale,
    )
    if run.ranks is not None:  # the epoch's sums over the global batches
        sums.loss, sums.correct, images = run.ranks.sum([sums.loss, sums.correct, sums.images])
        sums.images = int(images)
    run.images += sums.images
    run.train_seconds += time.perf_counter() - t0
    return sums.mean_loss, sums.accuracy


def wants_precise_bn(run: _Run, steps_done: int) -> bool:
    """Whether to recompute batchnorm statistics before evaluating after ``steps_done`` steps."""
    mode = run.hp["precise_bn"]
    return mode == "on" or (mode == "auto" and steps_done < PRECISE_BN_STEPS)


PRECISE_BN_EPOCH = 1_000_000  # precise BN of epoch e draws batches as "epoch" 1e6 + e would


def precise_bn(run: _Run, epoch: int) -> None:
    """Recompute the batchnorm statistics on training batches (seeded apart from training).
    A data-parallel rank recomputes them alone over the whole global batches (no collective:
    every rank gets a 1-device run's statistics, :func:`~.distributed.local_batchnorm`)."""
    loader = run.train_loader
    local: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if run.ranks is not None:
        from .distributed import local_batchnorm

        loader, local = loader.unsharded(), local_batchnorm(run.model)
    epoch_batches = loader.epoch(PRECISE_BN_EPOCH + epoch)
    batches = (run.prepare(x) for x, _ in checked(epoch_batches, run.should_stop))
    with local:
        recompute_batchnorm(run.model, batches, autocast=run.autocast)


def evaluate(run: _Run) -> dict[str, float]:
    """Validation loss and the task's metrics (classification: top-1 and, with 100+ classes,
    top-5 accuracy). Raises :class:`~rpg_core.stopping.Stopped` when a callback asks to stop
    (checked between batches)."""
    return evaluate_batches(
        run.model,
        checked(run.val_loader.epoch(0), run.should_stop),
        task=run.task,
        top5=run.task.info.top5 and run.data.num_classes >= 100,
        autocast=run.autocast,
        prepare=run.prepare,
        reduce=run.ranks.sum_dict if run.ranks is not None else None,
    )
