"""The training engine: run an :class:`~rpg_core.spec.ExperimentSpec` to the end.

``train(spec, callbacks=..., checkpoint_dir=...)`` trains with the spec's recipe (SGD with
momentum, a per-step learning-rate schedule: :mod:`rpg_core.schedules`), writes a checkpoint every epoch, resumes from it, and returns a
:class:`TrainResult`. On the CPU a resumed run ends bit-identical to an uninterrupted one; on
CUDA it trains in bf16 autocast with channels_last.

Callbacks get ``on_step`` (throttled), ``on_epoch_end`` and are asked ``should_stop()`` before
every step: a stopped run keeps its last checkpoint and its result says ``stopped``.

Before an evaluation early in a run the batchnorm statistics are recomputed on training batches
(``train.precise_bn``, :mod:`rpg_core.precise_bn`); a finished run's result carries the guard
rails' flags (:mod:`rpg_core.health`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import Checkpoint, load_checkpoint, restore_checkpoint, save_checkpoint
from .data import BatchLoader, Datasets, default_data_root, load_datasets, resolve_under
from .exceptions import RPGConfigError, RPGTrainingError
from .health import check_run
from .models import create_model
from .params import count_macs, count_params
from .precise_bn import recompute_batchnorm
from .schedules import make_scheduler
from .spec import (
    PRECISE_BN_STEPS,
    ExperimentSpec,
    auto_batch_size,
    parse_spec,
    resolve_augment,
    resolve_train,
)

log = logging.getLogger(__name__)

Status = Literal["completed", "stopped"]


class Callback:
    """Hooks into a run; subclass and override what you need (all are no-ops here).

    Any object with some of these methods works as a callback too.
    """

    def on_step(self, step: int, total: int, metrics: dict[str, float]) -> None:
        """``step`` of ``total`` (whole run); throttled by ``train(step_interval_s=...)``."""

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        """After epoch ``epoch`` (1-based) is trained, evaluated and checkpointed."""

    def on_resume(self, history: list[dict[str, float]]) -> None:
        """Once, when a run resumes from a checkpoint, with the epochs already done.

        A process that died between writing a checkpoint and reporting that epoch finds here
        what it missed (the worker rewrites these metrics; its writes are idempotent).
        """

    def should_stop(self) -> bool:
        """Asked before every step: True stops the run cooperatively."""
        return False

    def on_train_end(self, result: TrainResult, model: nn.Module) -> None:
        """Once, with the result and the trained model (e.g. to save a compact model file)."""


@dataclass(frozen=True)
class TrainResult:
    """What a run achieved. Accuracies are fractions in [0, 1]."""

    name: str
    status: Status
    epochs_run: int  # epochs completed (including ones before a resume)
    epochs: int  # epochs the spec asks for
    final_val_acc: float | None
    best_val_acc: float | None
    best_epoch: int | None
    final_val_top5: float | None  # 100+ classes only
    best_val_top5: float | None
    train_acc: float | None  # the last epoch's running accuracy on augmented batches
    train_val_gap: float | None  # train_acc - final_val_acc
    params: dict[str, int]  # count_params(model).as_dict()
    flops: int  # multiply-accumulates of conv + linear layers for one image
    wall_time_s: float  # this call's time
    images_per_s: float  # this call's training throughput
    device: str
    hyperparameters: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoint: str | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    prune: dict[str, Any] | None = None  # pruning jobs: params and FLOPs before and after
    health: list[dict[str, str]] = field(default_factory=list)  # guard-rail flags (health.py)
    # eval-mode forward time per image after training, on the run's device (measure_inference)
    inference_ms_per_image: float | None = None

    @property
    def stopped(self) -> bool:
        return self.status == "stopped"

    @property
    def flagged(self) -> bool:
        """True when a guard rail flagged the run (diverged, near chance)."""
        return bool(self.health)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- helpers ------------------------------------------------------------------------------------
INFERENCE_BATCH = 64  # images per timed forward
INFERENCE_WARMUP = 2
INFERENCE_REPEATS = 5


def measure_inference(
    model: nn.Module,
    images: torch.Tensor,
    *,
    warmup: int = INFERENCE_WARMUP,
    repeats: int = INFERENCE_REPEATS,
) -> float:
    """Milliseconds per image of an eval-mode, no-grad forward of the batch ``images`` (already
    on the model's device and prepared): ``warmup`` untimed passes, then the median of
    ``repeats`` timed ones divided by the batch size. The model is left in eval mode."""
    if images.shape[0] == 0:
        raise RPGConfigError("measure_inference needs at least one image")
    model.eval()
    cuda = images.device.type == "cuda"
    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            if cuda:
                torch.cuda.synchronize(images.device)
            t0 = time.perf_counter()
            model(images)
            if cuda:
                torch.cuda.synchronize(images.device)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    times.sort()
    return 1000.0 * times[len(times) // 2] / images.shape[0]


def _inference_ms(run: _Run) -> float | None:
    """The run's inference time per image on a fixed batch of validation images."""
    batch = next(iter(run.val_loader.epoch(0)), None)
    if batch is None:
        return None
    images = run.prepare(batch[0][:INFERENCE_BATCH])
    with run.autocast():
        return measure_inference(run.model, images)


def count_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of every Conv and Linear layer for one input of ``input_shape``
    ([C, H, W]); what ``TrainResult.flops`` reports (see :func:`rpg_core.params.count_macs`)."""
    c, h, w = (int(v) for v in input_shape)
    return count_macs(model, (c, h, w))


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RPGConfigError(f"train.device is {name!r} but CUDA is not available; use cpu or auto")
    return torch.device(name)


@contextlib.contextmanager
def _deterministic(enabled: bool, device: torch.device) -> Iterator[None]:
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


def _notify(callbacks: Sequence[Any], method: str, *args: Any) -> None:
    for cb in callbacks:
        fn = getattr(cb, method, None)
        if fn is not None:
            fn(*args)


def _stop_requested(callbacks: Sequence[Any]) -> bool:
    return any(bool(getattr(cb, "should_stop", lambda: False)()) for cb in callbacks)


class _Stop(Exception):
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
    last_lr: float = 0.0  # the learning rate of the last step taken

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
def _check_finite(loss: float, epoch: int, step: int) -> None:
    if not math.isfinite(loss):
        what = "NaN" if math.isnan(loss) else "inf"
        raise RPGTrainingError(
            f"loss became {what} at epoch {epoch}, step {step}; lower train.lr or check the data"
        )


def _step_metrics(run: _Run, epoch: int, step: int, sums: list[float], t0: float) -> dict[str, Any]:
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
        "loss": sums[0] / max(sums[2], 1),
        "acc": sums[1] / max(sums[2], 1),
        "lr": run.optimizer.param_groups[0]["lr"],
        "eta_s": remaining / rate if rate > 0 else float("nan"),
    }


def train_epoch(run: _Run, epoch: int) -> tuple[float, float]:
    """One pass over the training set; (mean loss, accuracy). ``epoch`` is 0-based."""
    run.model.train()
    sums = [0.0, 0.0, 0]  # loss * n, correct, n
    t0 = time.perf_counter()
    n_steps = len(run.train_loader)
    for step, (x, y) in enumerate(run.train_loader.epoch(epoch), start=1):
        if _stop_requested(run.callbacks):
            raise _Stop
        with run.autocast():
            logits = run.model(run.prepare(x))
            loss = F.cross_entropy(logits.float(), y, label_smoothing=run.hp["label_smoothing"])
        value = float(loss.item())
        _check_finite(value, epoch + 1, step)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.last_lr = run.optimizer.param_groups[0]["lr"]
        run.optimizer.step()
        run.scheduler.step()
        sums[0] += value * len(y)
        sums[1] += float((logits.argmax(1) == y).sum().item())
        sums[2] += len(y)
        now = time.perf_counter()
        if now - run.last_notify >= run.step_interval_s or step == n_steps:
            run.last_notify = now
            metrics = _step_metrics(run, epoch, step, sums, t0)
            _notify(run.callbacks, "on_step", epoch * n_steps + step, run.total_steps, metrics)
    run.images += int(sums[2])
    run.train_seconds += time.perf_counter() - t0
    return sums[0] / max(sums[2], 1), sums[1] / max(sums[2], 1)


def wants_precise_bn(run: _Run, steps_done: int) -> bool:
    """Whether to recompute batchnorm statistics before evaluating after ``steps_done`` steps."""
    mode = run.hp["precise_bn"]
    return mode == "on" or (mode == "auto" and steps_done < PRECISE_BN_STEPS)


PRECISE_BN_EPOCH = 1_000_000  # precise BN of epoch e draws batches as "epoch" 1e6 + e would


def precise_bn(run: _Run, epoch: int) -> None:
    """Recompute the batchnorm statistics on training batches (seeded apart from training)."""
    batches = (run.prepare(x) for x, _ in run.train_loader.epoch(PRECISE_BN_EPOCH + epoch))
    recompute_batchnorm(run.model, batches, autocast=run.autocast)


def evaluate(run: _Run) -> dict[str, float]:
    """Validation loss, top-1 and (100+ classes) top-5 accuracy."""
    run.model.eval()
    loss_sum, top1, top5, n = 0.0, 0.0, 0.0, 0
    with torch.no_grad():
        for x, y in run.val_loader.epoch(0):
            with run.autocast():
                logits = run.model(run.prepare(x)).float()
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum").item())
            top1 += float((logits.argmax(1) == y).sum().item())
            if run.data.num_classes >= 100:
                top = logits.topk(5, dim=1).indices
                top5 += float((top == y[:, None]).any(1).sum().item())
            n += len(y)
    out = {"val_loss": loss_sum / max(n, 1), "val_acc": top1 / max(n, 1)}
    if run.data.num_classes >= 100:
        out["val_top5"] = top5 / max(n, 1)
    return out


# --- set-up -------------------------------------------------------------------------------------
def _pruned_source(
    spec: ExperimentSpec, source: nn.Module | None, data: Datasets, data_root: str | Path | None
) -> tuple[nn.Module, dict[str, Any]]:
    """A pruning job's starting model: ``source`` (or the .rpg file it names) pruned."""
    from .analysis.pruning import prune_model
    from .compact import load_compact

    assert spec.prune is not None
    if source is None:
        if not isinstance(spec.prune.source, str):
            raise RPGConfigError(
                f"prune.source: experiment {spec.prune.source} is resolved by the service; "
                f"locally, name a .rpg file under <data root>/models/ or pass source_model="
            )
        root = Path(data_root) if data_root is not None else default_data_root()
        source = load_compact(resolve_under(root, "models", spec.prune.source))
    size = (data.in_channels, data.image_size, data.image_size)
    pruned = prune_model(source, spec.prune.fraction, input_size=size)
    return pruned.model, {"spec": spec.prune.model_dump(), "report": pruned.report.as_dict()}


RING_LR_USES = 512  # lr_by_ring_uses: rings used more often than this lower the lr


def ring_lr_factor(model: nn.Module) -> float:
    """``min(1, sqrt(RING_LR_USES / uses))`` for the model's most-used ring (1: no ring).

    A ring element used ``uses = M / N`` times gets a gradient about as large as one generated
    weight's while the ring's norm is ``sqrt(N / M)`` of the generated weights', so behind
    batchnorm its relative step is ``sqrt(uses)`` times a plain layer's. Measured on digits,
    3 epochs, 2K ring: width 0.5 (1,400 uses) lr 0.1 gives 80%, 0.06 93%; width 1 (5,600 uses)
    lr 0.021 88%, 0.03 91%; lowering the ring's lr alone gave 70% (docs/BENCHMARKS.md).
    """
    from .ring import Ring

    uses = [m.spec.generated / m.spec.size for m in model.modules() if isinstance(m, Ring)]
    return min(1.0, math.sqrt(RING_LR_USES / max(uses))) if uses else 1.0


def make_optimizer(model: nn.Module, hp: dict[str, Any]) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's) or AdamW, from resolved hyper-parameters."""
    params = model.parameters()
    if hp["optimizer"] == "adamw":
        return torch.optim.AdamW(
            params, lr=hp["lr"], betas=(hp["momentum"], 0.999), weight_decay=hp["weight_decay"]
        )
    return torch.optim.SGD(
        params, lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"]
    )


def _build(
    spec: ExperimentSpec,
    data_root: str | Path | None,
    callbacks: Sequence[Any],
    step_interval_s: float,
    source_model: nn.Module | None = None,
) -> _Run:
    hp = resolve_train(spec.train)
    device = pick_device(spec.train.device)
    data_spec = spec.data.model_copy(update={"augment": resolve_augment(spec)})
    data = load_datasets(data_spec, data_root=data_root)
    hp["augment"] = data_spec.augment
    if hp["batch_size"] is None:
        hp["batch_size"] = auto_batch_size(len(data.train))
    torch.manual_seed(spec.train.seed)
    prune: dict[str, Any] | None = None
    if spec.prune is not None:
        model, prune = _pruned_source(spec, source_model, data, data_root)
    else:
        model = create_model(spec, num_classes=data.num_classes, in_channels=data.in_channels)
    if device.type == "cuda":
        model = model.to(device).to(memory_format=torch.channels_last)
    if hp["lr_by_ring_uses"] and spec.train.lr is None:
        hp["lr_factor"] = ring_lr_factor(model)
        hp["lr"] = hp["lr"] * hp["lr_factor"]
    optimizer = make_optimizer(model, hp)
    kw: dict[str, Any] = {"seed": spec.train.seed, "device": device}
    workers = spec.data.num_workers
    train_loader = BatchLoader(data, "train", hp["batch_size"], num_workers=workers, **kw)
    return _Run(
        spec=spec,
        hp=hp,
        data=data,
        model=model,
        optimizer=optimizer,
        scheduler=make_scheduler(optimizer, hp, len(train_loader)),
        train_loader=train_loader,
        val_loader=BatchLoader(data, "val", hp["batch_size"], num_workers=workers, **kw),
        prune=prune,
        device=device,
        callbacks=callbacks,
        step_interval_s=step_interval_s,
    )


def saved_spec(saved: Any) -> ExperimentSpec:
    """A checkpoint's spec, parsed again (newer fields take their defaults), except that rings
    saved before ``rpg.generator`` existed were made by generator 1 and are rebuilt with it."""
    if isinstance(saved, dict) and isinstance(saved.get("rpg"), dict):
        if "generator" not in saved["rpg"]:
            saved = {**saved, "rpg": {**saved["rpg"], "generator": 1}}
    return parse_spec(saved)


def _same_spec(saved: Any, spec: ExperimentSpec) -> bool:
    """Whether a checkpoint's saved spec is ``spec``."""
    try:
        return saved_spec(saved) == spec
    except RPGConfigError:
        return False


def _for_checkpoint(spec: ExperimentSpec, ckpt: Checkpoint | None) -> ExperimentSpec:
    """``spec``, with the generator of the checkpoint it resumes when that predates generator 2."""
    if ckpt is None or spec.rpg is None:
        return spec
    try:
        saved = saved_spec(ckpt.meta.get("spec"))
    except RPGConfigError:
        return spec  # _resume names the mismatch
    if saved.rpg is None or saved.rpg.generator == spec.rpg.generator:
        return spec
    if saved.model_copy(update={"rpg": spec.rpg}) != spec:
        return spec
    log.info("resuming rings made by generator %d", saved.rpg.generator)
    return spec.model_copy(update={"rpg": saved.rpg})


def _resume(run: _Run, ckpt: Checkpoint, checkpoint_dir: Path) -> None:
    if not _same_spec(ckpt.meta.get("spec"), run.spec):
        raise RPGConfigError(
            f"the checkpoint in {checkpoint_dir} was written for a different spec; "
            f"use another checkpoint directory or resume=False"
        )
    if not restore_checkpoint(
        ckpt, model=run.model, optimizer=run.optimizer, scheduler=run.scheduler
    ):  # an epoch-based scheduler of an older rpg_core: continue the per-step one from here
        run.scheduler.last_epoch = ckpt.epoch * len(run.train_loader)
        for group, lr in zip(run.optimizer.param_groups, run.scheduler.get_lr(), strict=True):
            group["lr"] = lr
        log.info("%s: epoch-based scheduler state converted to per-step", run.spec.name)
    run.history = list(ckpt.meta.get("history", []))
    run.start_epoch = ckpt.epoch
    log.info("resumed %s from %s at epoch %d", run.spec.name, checkpoint_dir, ckpt.epoch)
    _notify(run.callbacks, "on_resume", list(run.history))


def _save(run: _Run, checkpoint_dir: Path, epoch: int) -> None:
    save_checkpoint(
        checkpoint_dir,
        model=run.model,
        optimizer=run.optimizer,
        scheduler=run.scheduler,
        epoch=epoch,
        meta={
            "spec": run.spec.model_dump(mode="json"),
            "history": run.history,
            "num_classes": run.data.num_classes,
            "in_channels": run.data.in_channels,
            "image_size": run.data.image_size,
            "data_generator": "torch.Generator seeded by (train.seed, epoch): see data.py",
        },
    )


def _result(run: _Run, status: Status, checkpoint_dir: Path | None, flops: int) -> TrainResult:
    h = run.history
    last = h[-1] if h else {}
    best = max(h, key=lambda r: r["val_acc"]) if h else {}
    final_val, train_acc = last.get("val_acc"), last.get("train_acc")
    gap = train_acc - final_val if train_acc is not None and final_val is not None else None
    return TrainResult(
        name=run.spec.name,
        status=status,
        epochs_run=len(h),
        epochs=run.hp["epochs"],
        final_val_acc=final_val,
        best_val_acc=best.get("val_acc"),
        best_epoch=int(best["epoch"]) if best else None,
        final_val_top5=last.get("val_top5"),
        best_val_top5=max((r["val_top5"] for r in h), default=None) if "val_top5" in last else None,
        train_acc=train_acc,
        train_val_gap=gap,
        params=count_params(run.model).as_dict(),
        flops=flops,
        wall_time_s=time.perf_counter() - run.started,
        images_per_s=run.images / run.train_seconds if run.train_seconds > 0 else 0.0,
        device=str(run.device),
        hyperparameters=dict(run.hp),
        history=list(h),
        checkpoint=str(checkpoint_dir) if checkpoint_dir is not None else None,
        spec=run.spec.model_dump(mode="json"),
        prune=run.prune,
        health=[f.as_dict() for f in _health(run)],
    )


def _health(run: _Run) -> list[Any]:
    val = run.data.val
    labels = val.y.tolist() if hasattr(val, "y") else list(val.labels)
    counts = [0] * run.data.num_classes
    for label in labels:
        counts[int(label)] += 1
    flags = check_run(run.history, num_classes=run.data.num_classes, val_label_counts=counts)
    for f in flags:
        log.warning("%s: %s: %s", run.spec.name, f.code, f.message)
    return flags


def load_trained_model(checkpoint_dir: str | Path) -> nn.Module:
    """The model of the checkpoint in ``checkpoint_dir``, rebuilt from its spec (CPU, eval)."""
    ckpt = load_checkpoint(checkpoint_dir)
    if ckpt is None:
        raise RPGConfigError(f"no checkpoint in {checkpoint_dir}")
    spec = saved_spec(ckpt.meta["spec"])
    model = create_model(
        spec, num_classes=ckpt.meta["num_classes"], in_channels=ckpt.meta["in_channels"]
    )
    model.load_state_dict(ckpt.prefixed("model/"), strict=True)
    return model.eval()


# --- the engine ---------------------------------------------------------------------------------
def _run_epochs(run: _Run, checkpoint_dir: Path | None) -> Status:
    for epoch in range(run.start_epoch, run.hp["epochs"]):
        t0 = time.perf_counter()
        try:
            train_loss, train_acc = train_epoch(run, epoch)
        except _Stop:
            log.info("%s: stop requested during epoch %d", run.spec.name, epoch + 1)
            return "stopped"
        if wants_precise_bn(run, (epoch + 1) * len(run.train_loader)):
            precise_bn(run, epoch)
        record = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "train_acc": train_acc,
            **evaluate(run),
            "lr": run.last_lr,
            "seconds": time.perf_counter() - t0,
        }
        run.history.append(record)
        if checkpoint_dir is not None:
            _save(run, checkpoint_dir, epoch + 1)
        log.info("%s epoch %d: %s", run.spec.name, epoch + 1, record)
        _notify(run.callbacks, "on_epoch_end", epoch + 1, dict(record))
        if epoch + 1 < run.hp["epochs"] and _stop_requested(run.callbacks):
            return "stopped"
    return "completed"


def train(
    spec: ExperimentSpec | dict[str, Any],
    *,
    callbacks: Sequence[Any] | None = None,
    checkpoint_dir: str | Path | None = None,
    data_root: str | Path | None = None,
    resume: bool = True,
    step_interval_s: float = 1.0,
    source_model: nn.Module | None = None,
) -> TrainResult:
    """Train ``spec`` to its last epoch (or until a callback stops it) and return the result.

    ``checkpoint_dir``: a checkpoint is written there after every epoch; with ``resume`` a run
    continues from it. ``data_root``: where datasets live (default ``$RPG_DATA_ROOT`` or
    ``./data``). ``step_interval_s``: the least time between two ``on_step`` calls.
    ``source_model``: for a pruning job (``spec.prune``), the trained model to prune (else the
    .rpg file ``prune.source`` names is read from ``<data_root>/models/``).
    Raises RPGTrainingError when the loss becomes NaN or inf.
    """
    spec = parse_spec(spec)
    cbs = list(callbacks or [])
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    ckpt = load_checkpoint(ckpt_dir) if ckpt_dir is not None and resume else None
    spec = _for_checkpoint(spec, ckpt)
    device = pick_device(spec.train.device)
    with _deterministic(spec.train.deterministic, device):
        run = _build(spec, data_root, cbs, step_interval_s, source_model)
        d = run.data
        flops = count_flops(run.model, (d.in_channels, d.image_size, d.image_size))
        if ckpt is not None and ckpt_dir is not None:
            _resume(run, ckpt, ckpt_dir)
        status = _run_epochs(run, ckpt_dir)
    result = _result(run, status, ckpt_dir, flops)
    result = replace(result, inference_ms_per_image=_inference_ms(run))
    _notify(cbs, "on_train_end", result, run.model)
    log.info(
        "%s %s after %d/%d epochs: val acc %s",
        spec.name,
        status,
        result.epochs_run,
        result.epochs,
        result.final_val_acc,
    )
    return result
