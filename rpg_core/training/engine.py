"""The training engine: run an :class:`~rpg_core.spec.ExperimentSpec` to the end.

``train(spec, callbacks=..., checkpoint_dir=...)`` trains with the spec's recipe (its optimizer,
SGD with momentum as in the paper or AdamW: :func:`rpg_core.training.optim.make_optimizer`; a per-step
learning-rate schedule: :mod:`rpg_core.training.schedules`), writes a checkpoint every epoch,
resumes from it, and returns a :class:`TrainResult` (:mod:`rpg_core.training.result`, the result
contract). On the CPU a resumed run
ends bit-identical to an uninterrupted one; on CUDA it trains in bf16 autocast with
channels_last.

Callbacks get ``on_step`` (throttled), ``on_epoch_end`` and are asked ``should_stop()`` before
every step, and at least once a second in the rest of a run (data generation, pruning,
evaluation, OOD evaluation: :mod:`rpg_core.stopping`): a stopped run keeps its last checkpoint
and its result says ``stopped``, whenever the stop came.

Before an evaluation early in a run the batchnorm statistics are recomputed on training batches
(``train.precise_bn``, :mod:`rpg_core.training.precise_bn`); a finished run's result carries the guard
rails' flags (:mod:`rpg_core.training.health`).

The steps and the evaluation pass are :mod:`rpg_core.training.loop`'s (the one training loop, which the
fine-tuning of a pruned network shares); :mod:`rpg_core.training.epoch` holds a run's state and one
epoch, :mod:`rpg_core.training.optim` the optimizer, :mod:`rpg_core.training.resume` the checkpoint's spec.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data import (
    BatchLoader,
    Datasets,
    TensorImages,
    TensorSamples,
    default_data_root,
    load_datasets,
    resolve_under,
)
from ..exceptions import RPGConfigError
from ..models import create_model
from ..rpg.params import ParamCount, count_macs, count_params
from ..spec import (
    ExperimentSpec,
    auto_batch_lr_factor,
    auto_batch_size,
    parse_spec,
    resolve_augment,
    resolve_train,
)
from ..spec.method import PRUNING_METHODS
from ..stopping import StopCheck, Stopped, callbacks_stop, check_stop
from ..tasks import get_task
from .checkpoint import Checkpoint, load_checkpoint, restore_checkpoint, save_checkpoint
from .distributed import Ranks
from .epoch import (
    PRECISE_BN_EPOCH,
    _notify,
    _Run,
    evaluate,
    precise_bn,
    train_epoch,
    wants_precise_bn,
)
from .health import check_baseline, check_run
from .loop import deterministic, pick_device
from .optim import RING_LR_USES, make_optimizer, ring_lr_factor
from .result import Status, TrainResult
from .resume import _for_checkpoint, _same_spec, load_trained_model, saved_spec
from .schedules import make_scheduler
from .timing import run_inference_ms

log = logging.getLogger(__name__)

__all__ = [
    "PRECISE_BN_EPOCH",
    "RING_LR_USES",
    "Callback",
    "Status",
    "TrainResult",
    "evaluate",
    "load_trained_model",
    "make_optimizer",
    "pick_device",
    "precise_bn",
    "ring_lr_factor",
    "saved_spec",
    "train",
    "train_epoch",
    "wants_precise_bn",
]


class Callback:
    """Hooks into a run; subclass and override what you need (all are no-ops here).

    Any object with some of these methods works as a callback too.
    """

    def on_step(self, step: int, total: int, metrics: dict[str, float]) -> None:
        """``step`` of ``total`` (whole run); throttled by ``train(step_interval_s=...)``."""

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        """After epoch ``epoch`` (1-based) is trained, evaluated and checkpointed."""

    def on_dense_reused(self, epochs: int) -> None:
        """A pruning method's run starts from the dense network another run of its sweep
        trained (``epochs`` of it, not trained again); ``on_resume`` follows with their curve."""

    def on_resume(self, history: list[dict[str, float]]) -> None:
        """Once, when a run resumes from a checkpoint, with the epochs already done.

        A process that died between writing a checkpoint and reporting that epoch finds here
        what it missed (the worker rewrites these metrics; its writes are idempotent).
        """

    def on_datasets(self, data: Datasets) -> None:
        """Once, when the run's datasets are loaded (before training), e.g. to reuse the
        validation data after training (:class:`rpg_core.analysis.SimilarityCallback`)."""

    def should_stop(self) -> bool:
        """Asked before every step (and at least once a second while data is generated, a
        source pruned, or the model evaluated): True stops the run cooperatively."""
        return False

    def on_train_end(self, result: TrainResult, model: nn.Module) -> None:
        """Once, with the result and the trained model (e.g. to save a compact model file);
        not called for a run stopped before its model was built."""


# --- helpers ------------------------------------------------------------------------------------
# --- set-up -------------------------------------------------------------------------------------
def _pruned_source(
    spec: ExperimentSpec,
    source: nn.Module | None,
    data: Datasets,
    data_root: str | Path | None,
    should_stop: StopCheck | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """A pruning job's starting model: ``source`` (or the .rpg file it names) pruned."""
    from ..format import load_compact
    from .pruning import prune_model

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
    pruned = prune_model(source, spec.prune.fraction, input_size=size, should_stop=should_stop)
    return pruned.model, {"spec": spec.prune.model_dump(), "report": pruned.report.as_dict()}


def _build(
    spec: ExperimentSpec,
    data_root: str | Path | None,
    callbacks: Sequence[Any],
    step_interval_s: float,
    source_model: nn.Module | None = None,
    ranks: Ranks | None = None,
) -> _Run:
    hp = resolve_train(spec.train)
    device = ranks.device if ranks is not None else pick_device(spec.train.device)
    data_spec = spec.data.model_copy(update={"augment": resolve_augment(spec)})
    # a rank stops where rank 0 decides (steps, epochs: Ranks.decide), never alone mid-loop
    should_stop = callbacks_stop(callbacks) if ranks is None else None
    data = load_datasets(data_spec, data_root=data_root, should_stop=should_stop)
    hp["augment"] = data_spec.augment
    batch_lr = 1.0  # an auto batch size below the recipe's lowers the lr (auto_batch_lr_factor)
    if hp["batch_size"] is None:
        batch_size = auto_batch_size(len(data.train))
        hp["batch_size"], batch_lr = batch_size, auto_batch_lr_factor(batch_size)
    torch.manual_seed(spec.train.seed)
    prune: dict[str, Any] | None = None
    if spec.prune is not None:
        model, prune = _pruned_source(spec, source_model, data, data_root, should_stop)
    else:
        model = create_model(spec, num_classes=data.num_classes, in_channels=data.in_channels)
    if ranks is not None:
        from .distributed import global_batchnorm

        model = global_batchnorm(model, ranks)
    if device.type == "cuda":
        model = model.to(device).to(memory_format=torch.channels_last)
    if spec.train.lr is None and (hp["lr_by_ring_uses"] or batch_lr < 1.0):
        # Both factors bound the same thing, the size of a step, so the tighter one applies.
        ring_lr = ring_lr_factor(model) if hp["lr_by_ring_uses"] else 1.0
        hp["lr_factor"] = min(ring_lr, batch_lr)
        hp["lr"] = hp["lr"] * hp["lr_factor"]
    optimizer = make_optimizer(model, hp)
    kw: dict[str, Any] = {"seed": spec.train.seed, "device": device}
    if ranks is not None:
        kw["shard"] = (ranks.rank, ranks.world)
    workers = spec.data.num_workers
    train_loader = BatchLoader(data, "train", hp["batch_size"], num_workers=workers, **kw)
    train_model = model
    if ranks is not None:
        from .distributed import wrap_ddp

        train_model = wrap_ddp(model, ranks)
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
        task=get_task(spec.task),
        ranks=ranks,
        train_model=train_model,
    )


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
    if run.ranks is not None and not run.ranks.leader:
        return  # rank 0 alone writes a data-parallel run's checkpoint
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


def dense_key(spec: ExperimentSpec) -> str:
    """The key of the dense network a pruning method trains first: the spec less its method,
    name and tags (every budget, and both pruning methods, of one sweep share it; another seed,
    recipe or data is another dense network)."""
    import hashlib
    import json

    dump = spec.model_dump(mode="json", exclude={"method", "name", "tags"})
    text = json.dumps(dump, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _reuse_dense(run: _Run, dense_dir: Path) -> bool:
    """Start from the dense network a run of the same dense spec trained (its checkpoint after
    the last dense epoch, in ``dense_dir``): no epoch is trained twice. False: none there."""
    ckpt = load_checkpoint(dense_dir)
    if ckpt is None or ckpt.epoch != run.hp["epochs"]:
        return False
    if ckpt.meta.get("dense_key") != dense_key(run.spec):
        return False
    restore_checkpoint(ckpt, model=run.model, optimizer=run.optimizer, scheduler=run.scheduler)
    run.history = list(ckpt.meta.get("history", []))
    run.start_epoch = ckpt.epoch
    run.dense_reused = True
    log.info("%s: the dense network of %s reused (%d epochs)", run.spec.name, dense_dir, ckpt.epoch)
    _notify(run.callbacks, "on_dense_reused", ckpt.epoch)  # then on_resume, as for a checkpoint
    _notify(run.callbacks, "on_resume", list(run.history))
    return True


def _keep_dense(run: _Run, dense_dir: Path) -> None:
    """The trained dense network, for the next run of the same dense spec (atomic write)."""
    save_checkpoint(
        dense_dir,
        model=run.model,
        optimizer=run.optimizer,
        scheduler=run.scheduler,
        epoch=run.hp["epochs"],
        meta={"dense_key": dense_key(run.spec), "history": run.history},
    )


def _prunes_after_training(spec: ExperimentSpec) -> bool:
    return spec.method is not None and spec.method.name in PRUNING_METHODS


class _Passes:
    """The training set as an iterable of epochs (each ``iter`` a new pass), for fine-tuning."""

    def __init__(self, run: _Run) -> None:
        self.run, self.passes = run, 0

    def __iter__(self) -> Any:
        self.passes += 1
        return iter(self.run.train_loader.epoch(len(self.run.history) + self.passes))


def _prune_after_training(run: _Run) -> None:
    """``method: prune-global`` or ``prune-filters`` after the dense epochs: prune the trained
    network to the budget in ``method.rounds`` rounds, each fine-tuned for
    ``method.finetune_epochs`` (SGD with cosine decay from the run's lr) and evaluated: one
    history record per round (``prune_round``, ``backbone_nonzero``). The report is the
    result's ``prune``."""
    from ..format import SPARSE_ATTR
    from ..models.budget import budget_count
    from .filter_pruning import prune_filters
    from .global_pruning import nonzero_backbone, prune_global
    from .pruning import finetune

    method = run.spec.method
    assert method is not None
    budget = budget_count(method.budget, count_params(run.model).backbone)
    passes = _Passes(run)

    def tune(model: nn.Module, r: int) -> dict[str, Any]:
        t0 = time.perf_counter()
        losses = finetune(
            model,
            passes,
            epochs=method.finetune_epochs or 0,
            lr=run.hp["lr"],
            should_stop=run.should_stop,
        )
        record: dict[str, Any] = {
            "epoch": len(run.history) + 1,
            "prune_round": r,
            "backbone_nonzero": nonzero_backbone(model),
            **({"train_loss": losses[-1]} if losses else {}),
            **evaluate(run),
            "seconds": time.perf_counter() - t0,
        }
        run.history.append(record)
        log.info("%s %s round %d: %s", run.spec.name, method.name, r, record)
        _notify(run.callbacks, "on_epoch_end", record["epoch"], dict(record))
        return {k: record[k] for k in ("prune_round", "backbone_nonzero") if k in record}

    kw: dict[str, Any] = {
        "rounds": method.rounds or 1,
        "finetune": tune,
        "should_stop": run.should_stop,
    }
    run.model.__dict__[SPARSE_ATTR] = True  # its .rpg file stores the zeros compactly
    if method.name == "prune-filters":
        d = run.data
        size = (d.in_channels, d.image_size, d.image_size)
        run.prune = prune_filters(run.model, budget, input_size=size, **kw).as_dict()
    else:
        run.prune = prune_global(run.model, budget, **kw).as_dict()


def _best_record(run: _Run) -> dict[str, Any]:
    """The history record with the best primary metric (the first best, as ``max`` picks);
    a pruning method's run's among its pruned rounds (the dense epochs are not the network)."""
    metric = run.task.info.primary_metric
    key = f"val_{metric.key}"
    best: dict[str, Any] = {}
    pruned = _prunes_after_training(run.spec) and any("prune_round" in r for r in run.history)
    for record in run.history:
        if pruned and "prune_round" not in record:
            continue
        value = record.get(key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if not best or metric.better(float(value), float(best[key])):
            best = record
    return best


def _task_metrics(run: _Run, record: dict[str, Any]) -> dict[str, float | None]:
    return {m.key: record.get(f"val_{m.key}") for m in run.task.info.metrics}


def _best_metrics(run: _Run) -> dict[str, float | None]:
    """Each metric's best value over the epochs (in its own direction)."""
    out: dict[str, float | None] = {}
    for m in run.task.info.metrics:
        values = [float(v) for r in run.history if (v := r.get(f"val_{m.key}")) is not None]
        out[m.key] = m.best(values) if values else None
    return out


def _params(run: _Run) -> ParamCount:
    """The run's parameter counts; a pruned network's backbone: its non-zero weights."""
    if _prunes_after_training(run.spec) and run.prune is not None:
        from .global_pruning import pruned_params

        return pruned_params(run.model)
    return count_params(run.model)


def _budget(run: _Run) -> int | None:
    """The spec's ``method.budget`` as a count of backbone parameters (a fraction of the dense
    network's: the plain network of the spec's ``model`` section); None without a method."""
    method = run.spec.method
    if method is None:
        return None
    if isinstance(method.budget, int):
        return method.budget
    from ..models.budget import budget_count
    from ..models.factory import plain_backbone

    d = run.data
    dense = plain_backbone(run.spec.model, num_classes=d.num_classes, in_channels=d.in_channels)
    return budget_count(method.budget, dense)


def _cost(run: _Run) -> dict[str, Any]:
    """The run's method, budget and training cost (TrainResult's issue-24 fields)."""
    method = run.spec.method
    rounds = sum(1 for r in run.history if "prune_round" in r)
    tuning = rounds * (method.finetune_epochs or 0) if method is not None else 0
    return {
        "method": method.name if method is not None else None,
        "budget": _budget(run),
        "total_epochs": len(run.history) - rounds + tuning,
        "total_wall_s": sum(float(r.get("seconds") or 0.0) for r in run.history),
        "dense_reused": run.dense_reused if _prunes_after_training(run.spec) else None,
    }


def _result(run: _Run, status: Status, checkpoint_dir: Path | None, flops: int) -> TrainResult:
    h = run.history
    last = h[-1] if h else {}
    best = _best_record(run)
    final_val, train_acc = last.get("val_acc"), last.get("train_acc")
    gap = train_acc - final_val if train_acc is not None and final_val is not None else None
    primary = run.task.info.primary_metric.key
    metrics = _task_metrics(run, last)
    baseline = _baseline(run)
    params = _params(run)
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
        params=params.as_dict(),
        backbone=params.backbone,
        **_cost(run),
        flops=flops,
        wall_time_s=time.perf_counter() - run.started,
        images_per_s=run.images / run.train_seconds if run.train_seconds > 0 else 0.0,
        device=str(run.device),
        hyperparameters=dict(run.hp),
        history=list(h),
        checkpoint=str(checkpoint_dir) if checkpoint_dir is not None else None,
        spec=run.spec.model_dump(mode="json"),
        prune=run.prune,
        health=[f.as_dict() for f in _health(run, baseline)],
        ood=run.ood,
        ood_acc=_mean_ood(run.ood),
        task=run.task.info.name,
        metrics=metrics,
        best_metrics=_best_metrics(run),
        primary_metric=primary,
        primary_value=metrics.get(primary),
        samples=_samples(run) if h else None,
        baseline=baseline,
    )


SAMPLES = 3  # validation images with predictions in a dense task's result (the run page)


def _samples(run: _Run) -> list[dict[str, Any]] | None:
    """A few validation images with the model's predictions (pose, multitask; None for
    classification, whose run page has no pictures)."""
    val = run.data.val
    if not run.task.info.pictures or not isinstance(val, TensorSamples):
        return None
    idx = torch.arange(min(SAMPLES, len(val)))
    raw = val.x[idx]
    targets = {k: v[idx] for k, v in val.targets.items()}
    x = next(iter(run.val_loader.epoch(0)))[0][: len(idx)]
    run.model.eval()
    with torch.no_grad(), run.autocast():
        outputs = run.model(run.prepare(x))
    samples: list[dict[str, Any]] = run.task.samples(raw, outputs, targets, k=len(idx))
    return samples


def _ood_scorer(run: _Run) -> Any:
    from ..evaluate.ood import Scorer

    return Scorer(
        model=run.model,
        batch_size=run.hp["batch_size"],
        device=run.device,
        autocast=run.autocast,
        prepare=run.prepare,
        num_workers=run.spec.data.num_workers,
        should_stop=run.should_stop,
    )


def evaluate_ood(run: _Run) -> dict[str, float]:
    """eval.ood's accuracies (rpg_core.evaluate.ood); only called when the spec lists OOD sets. Raises
    Stopped when a callback asks to stop (checked per batch and per shifted chunk)."""
    from ..evaluate.ood import evaluate_ood as score

    return score(_ood_scorer(run), run.data, run.spec.eval.ood, run.data_root)


def _mean_ood(results: dict[str, float] | None) -> float | None:
    if not results:
        return None
    from ..evaluate.ood import mean_ood

    return mean_ood(results)


def _baseline(run: _Run) -> dict[str, float] | None:
    """A dense task's metrics for a constant prediction (rpg_core.tasks.Task.baseline)."""
    train, val = run.data.train, run.data.val
    if not isinstance(train, TensorSamples) or not isinstance(val, TensorSamples):
        return None
    return run.task.baseline(train.targets, val.targets) or None


def _health(run: _Run, base: dict[str, float] | None) -> list[Any]:
    """The guard rails' flags; ``base``: a dense task's constant-prediction metrics."""
    val = run.data.val
    if isinstance(val, TensorSamples):  # pose, multitask: no classes; a constant prediction
        flags = check_run(run.history, num_classes=2, val_label_counts=[])
        if run.history and base:
            flags += check_baseline(run.history[-1], base, run.task.info.metrics)
    else:
        labels = val.y.tolist() if isinstance(val, TensorImages) else list(val.labels)
        counts = [0] * run.data.num_classes
        for label in labels:
            counts[int(label)] += 1
        flags = check_run(run.history, num_classes=run.data.num_classes, val_label_counts=counts)
    for f in flags:
        log.warning("%s: %s: %s", run.spec.name, f.code, f.message)
    return flags


# --- the engine ---------------------------------------------------------------------------------
def _epoch_ood(run: _Run) -> dict[str, float]:
    """``{"ood_acc": mean}`` at every evaluation when eval.ood_each_epoch asks for it."""
    if not (run.spec.eval.ood and run.spec.eval.ood_each_epoch):
        return {}
    mean = _mean_ood(evaluate_ood(run))
    return {"ood_acc": mean} if mean is not None else {}


def _run_epochs(run: _Run, checkpoint_dir: Path | None) -> Status:
    for epoch in range(run.start_epoch, run.hp["epochs"]):
        t0 = time.perf_counter()
        try:
            train_loss, train_acc = train_epoch(run, epoch)
            if wants_precise_bn(run, (epoch + 1) * len(run.train_loader)):
                precise_bn(run, epoch)
            record = {
                "epoch": epoch + 1,
                "train_loss": train_loss,
                **({"train_acc": train_acc} if train_acc is not None else {}),
                **evaluate(run),
                **_epoch_ood(run),
                "lr": run.last_lr,
                "seconds": time.perf_counter() - t0,
            }
        except Stopped:  # the steps (_Stop), precise BN, evaluation or OOD evaluation
            log.info("%s: stop requested during epoch %d", run.spec.name, epoch + 1)
            return "stopped"
        run.history.append(record)
        if checkpoint_dir is not None:
            _save(run, checkpoint_dir, epoch + 1)
        log.info("%s epoch %d: %s", run.spec.name, epoch + 1, record)
        _notify(run.callbacks, "on_epoch_end", epoch + 1, dict(record))
        if epoch + 1 < run.hp["epochs"] and run.stop_now():
            return "stopped"
    return "completed"


def _stopped_before_training(spec: ExperimentSpec, device: torch.device) -> TrainResult:
    """The result of a run stopped before its model existed (no epoch, no checkpoint)."""
    log.info("%s stopped before training (while loading its data or pruning)", spec.name)
    return TrainResult(
        name=spec.name,
        status="stopped",
        epochs=int(resolve_train(spec.train)["epochs"]),
        device=str(device),
        spec=spec.model_dump(mode="json"),
        task=spec.task,
    )


def train(
    spec: ExperimentSpec | dict[str, Any],
    *,
    callbacks: Sequence[Any] | None = None,
    checkpoint_dir: str | Path | None = None,
    data_root: str | Path | None = None,
    resume: bool = True,
    step_interval_s: float = 1.0,
    source_model: nn.Module | None = None,
    dense_cache: str | Path | None = None,
) -> TrainResult:
    """Train ``spec`` to its last epoch (or until a callback stops it) and return the result.

    ``checkpoint_dir``: a checkpoint is written there after every epoch; with ``resume`` a run
    continues from it. ``data_root``: where datasets live (default ``$RPG_DATA_ROOT`` or
    ``./data``). ``step_interval_s``: the least time between two ``on_step`` calls.
    ``source_model``: for a pruning job (``spec.prune``), the trained model to prune (else the
    .rpg file ``prune.source`` names is read from ``<data_root>/models/``).
    ``dense_cache``: a folder shared by the runs of a sweep; a pruning method's run keeps its
    trained dense network there (``<dense_cache>/<dense_key>``) and a run of the same dense spec
    (another budget or pruning method) starts from it instead of training it again.
    ``train.devices`` > 1: the run trains as that many ranks of DDP under torchrun
    (:mod:`rpg_core.training.distributed`); the callbacks are called here as for one device.
    Raises RPGTrainingError when the loss becomes NaN or inf.
    """
    spec = parse_spec(spec)
    if spec.train.devices > 1:
        from .distributed import launch

        return launch(
            spec,
            callbacks=list(callbacks or []),
            checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir is not None else None,
            data_root=data_root,
            resume=resume,
            step_interval_s=step_interval_s,
        )
    return run_train(
        spec,
        callbacks=callbacks,
        checkpoint_dir=checkpoint_dir,
        data_root=data_root,
        resume=resume,
        step_interval_s=step_interval_s,
        source_model=source_model,
        dense_cache=dense_cache,
    )


def run_train(
    spec: ExperimentSpec | dict[str, Any],
    *,
    callbacks: Sequence[Any] | None = None,
    checkpoint_dir: str | Path | None = None,
    data_root: str | Path | None = None,
    resume: bool = True,
    step_interval_s: float = 1.0,
    source_model: nn.Module | None = None,
    dense_cache: str | Path | None = None,
    ranks: Ranks | None = None,
) -> TrainResult:
    """:func:`train` in this process: one device, or with ``ranks`` one rank of a data-parallel
    run (:func:`rpg_core.training.distributed.main` calls it so)."""
    spec = parse_spec(spec)
    cbs = list(callbacks or [])
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    ckpt = load_checkpoint(ckpt_dir) if ckpt_dir is not None and resume else None
    spec = _for_checkpoint(spec, ckpt)
    device = ranks.device if ranks is not None else pick_device(spec.train.device)
    with deterministic(spec.train.deterministic, device):
        try:
            run = _build(spec, data_root, cbs, step_interval_s, source_model, ranks)
        except Stopped:  # while its data was generated or its source pruned
            return _stopped_before_training(spec, device)
        if data_root is not None:
            run.data_root = Path(data_root)
        _notify(cbs, "on_datasets", run.data)
        if spec.eval.ood:  # a missing folder or a bad class map fails before any training
            from ..evaluate.ood import check_ood_sources

            check_ood_sources(spec.eval.ood, run.data, run.data_root)
        d = run.data
        # TrainResult.flops holds multiply-accumulates (MACs) of the conv and linear layers
        flops = count_macs(run.model, (d.in_channels, d.image_size, d.image_size))
        dense_dir = (
            Path(dense_cache) / dense_key(spec)
            if dense_cache is not None and _prunes_after_training(spec)
            else None
        )
        if ckpt is not None and ckpt_dir is not None:
            _resume(run, ckpt, ckpt_dir)
        elif dense_dir is not None:
            _reuse_dense(run, dense_dir)
        status = _run_epochs(run, ckpt_dir)
        if status == "completed" and dense_dir is not None and not run.dense_reused:
            _keep_dense(run, dense_dir)
        if status == "completed" and _prunes_after_training(spec):
            try:
                _prune_after_training(run)
            except Stopped:
                log.info("%s: stop requested while pruning to the budget", spec.name)
                status = "stopped"
        if spec.eval.ood and status == "completed":
            try:
                check_stop(run.should_stop)
                run.ood = evaluate_ood(run)
            except Stopped:
                log.info("%s: stop requested during the OOD evaluation", spec.name)
                status = "stopped"
    result = _result(run, status, ckpt_dir, flops)
    if not result.stopped:
        result = result.model_copy(update={"inference_ms_per_image": run_inference_ms(run)})
    _notify(cbs, "on_train_end", result, run.model)
    log.info(
        "%s %s after %d/%d epochs: val %s %s",
        spec.name,
        status,
        result.epochs_run,
        result.epochs,
        result.primary_metric,
        result.primary_value,
    )
    return result
