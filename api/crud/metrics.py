"""Reads of what runs measured: metric series per epoch and (params, accuracy) points."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..models import Experiment, MetricPoint, Result, StoredFile
from ..status import JobStatus
from .listing import ListFilter, filtered


def metric_series(session: Session, experiment_id: int, after_id: int = 0) -> list[MetricPoint]:
    q = (
        select(MetricPoint)
        .where(MetricPoint.experiment_id == experiment_id, MetricPoint.id > after_id)
        .order_by(MetricPoint.id)
    )
    return list(session.scalars(q))


class Point(NamedTuple):
    """One succeeded run as the power law reads it (a named tuple: 10,000 of them per answer,
    built in a third of a frozen dataclass's time)."""

    experiment_id: int
    arch: str
    scope: str
    dataset: str
    params: int
    value: float  # the metric's value: an accuracy, a PCKh, an RMSE
    flags: tuple[str, ...] = ()  # guard-rail flags (rpg_core.training.health)
    sharing: str | None = None  # model.sharing of a stacked model (pose, multitask)
    stacks: int | None = None  # model.stacks of a stacked model
    conditions_key: str | None = None  # rpg_core.spec.conditions (None: unknown conditions)
    study_id: int | None = None  # a search trial's study (api.search), read with the point
    trial_number: int | None = None  # ... and its number in that study


def _flags(raw: Any) -> tuple[str, ...]:
    if not raw:
        return ()  # most runs: no flag
    return tuple(c for c in str(raw).split(",") if c)


def power_law_points(
    session: Session, f: ListFilter, metric: str = "best_val_acc", limit: int = 10_000
) -> list[Point]:
    """(params, accuracy) of succeeded runs with both set, oldest first, with their search
    trial's study and number (one SELECT of columns, no ORM objects)."""
    col = getattr(Experiment, metric)
    q = select(
        Experiment.id,
        Experiment.arch,
        Experiment.scope,
        Experiment.dataset,
        Experiment.backbone_params,
        col,
        Experiment.flags,
        Experiment.conditions_key,
        Experiment.study_id,
        Experiment.trial_number,
    )
    q = filtered(q, f).where(
        Experiment.status == JobStatus.succeeded,
        Experiment.backbone_params.is_not(None),
        col.is_not(None),
    )
    # Core execution: plain rows, without the ORM's loading layer over 10,000 of them
    rows = session.connection().execute(q.order_by(Experiment.id).limit(limit)).all()
    return [
        Point(
            int(r[0]), r[1], r[2], r[3], int(r[4]), float(r[5]), _flags(r[6]),
            conditions_key=r[7], study_id=r[8], trial_number=r[9],
        )
        for r in rows
    ]  # fmt: skip


def gap_points(session: Session, f: ListFilter, limit: int = 10_000) -> list[tuple[Point, float]]:
    """(point at final val accuracy, train - val gap) of succeeded runs with train accuracy."""
    q: Any = select(
        Experiment.id,
        Experiment.arch,
        Experiment.scope,
        Experiment.dataset,
        Experiment.backbone_params,
        Experiment.val_acc,
        Experiment.flags,
        Experiment.train_acc,
        Experiment.conditions_key,
    )
    q = filtered(q, f).where(
        Experiment.status == JobStatus.succeeded,
        Experiment.backbone_params.is_not(None),
        Experiment.val_acc.is_not(None),
        Experiment.train_acc.is_not(None),
    )
    rows = session.execute(q.order_by(Experiment.id).limit(limit)).all()
    return [
        (
            Point(
                int(r[0]), r[1], r[2], r[3], int(r[4]), float(r[5]), _flags(r[6]),
                conditions_key=r[8],
            ),
            float(r[7]) - float(r[5]),
        )
        for r in rows
    ]  # fmt: skip


def conditions_of_runs(session: Session, ids: list[int]) -> dict[int, dict[str, Any] | None]:
    """The stored conditions (rpg_core.spec.conditions) of these runs, by id: one query, read for
    one run per group (every run of a group has the same conditions but its size knobs)."""
    if not ids:
        return {}
    rows = session.execute(
        select(Experiment.id, Experiment.conditions).where(Experiment.id.in_(ids))
    ).all()
    return {int(r[0]): r[1] if isinstance(r[1], dict) else None for r in rows}


def results_version(session: Session) -> tuple[int, str, int]:
    """What an answer computed from the succeeded runs depends on, in two index lookups and an
    index count: how many runs succeeded, the latest change among them (a run that succeeds,
    is flagged or gets its result bumps ``updated_at``; a deleted one lowers the count) and the
    newest stored file (``x=bytes`` reads the model files)."""
    n, last = session.execute(
        select(func.count(), func.max(Experiment.updated_at)).where(
            Experiment.status == JobStatus.succeeded
        )
    ).one()
    newest_file = session.scalar(select(func.max(StoredFile.id)))
    return int(n), last.isoformat() if last is not None else "", int(newest_file or 0)


def condition_of_succeeded(session: Session, keys: list[str], name: str) -> dict[int, Any]:
    """One stored condition (``method.budget``, ...) of the succeeded runs of these conditions
    keys, by id (those that have it): one query that reads the value out of each run's
    conditions in the database, not the whole documents (a budget table over thousands of runs
    needs one number of each), selected by key rather than by a list of thousands of ids."""
    if not keys:
        return {}
    value = Experiment.conditions[name]
    rows = session.execute(
        select(Experiment.id, value).where(
            Experiment.conditions_key.in_(keys),
            Experiment.status == JobStatus.succeeded,
            value.is_not(None),
        )
    ).all()
    return {int(r[0]): r[1] for r in rows if r[1] is not None}


def model_file_sizes(session: Session, ids: list[int]) -> dict[int, int]:
    """The bytes of these runs' downloadable model files (StoredFile of kind ``model``), by
    id: one query; a run without a model file is absent."""
    if not ids:
        return {}
    rows = session.execute(
        select(StoredFile.experiment_id, StoredFile.size).where(
            StoredFile.kind == "model", StoredFile.experiment_id.in_(ids)
        )
    ).all()
    return {int(r[0]): int(r[1]) for r in rows if r[1] is not None}


def ood_results(
    session: Session, f: ListFilter, limit: int = 2_000
) -> list[tuple[Experiment, dict[str, Any]]]:
    """Succeeded runs whose result holds out-of-distribution accuracies (eval.ood), oldest
    first, with their result JSON."""
    q = select(Experiment, Result.data).join(Result, Result.experiment_id == Experiment.id)
    q = filtered(q, f).where(Experiment.status == JobStatus.succeeded)
    rows = session.execute(q.order_by(Experiment.id).limit(limit)).all()
    return [(r[0], r[1]) for r in rows if isinstance(r[1], dict) and r[1].get("ood")]


def spec_sharing_stacks(spec: Any) -> tuple[str | None, int | None]:
    """(model.sharing, model.stacks) of a stacked model's spec, defaults filled; (None, None)
    for a model without sub-networks."""
    from rpg_core.spec.model import sharing_and_stacks

    return sharing_and_stacks((spec or {}).get("model") or {})


def task_metric_points(
    session: Session, f: ListFilter, task: str, metric: str, limit: int = 10_000
) -> list[Point]:
    """(params, metric value) of a task's succeeded runs, oldest first: the primary metric
    from the ``primary_value`` column, any other from the result's ``metrics``; params are the
    backbone's (the total where a run has no backbone count)."""
    from rpg_core.catalog.tasks import task_info

    primary = task_info(task).primary[0]
    params = func.coalesce(Experiment.backbone_params, Experiment.total_params)
    value: Any = (
        Experiment.primary_value if metric == primary else Result.data["metrics"][metric].as_float()
    )
    q: Any = select(
        Experiment.id,
        Experiment.arch,
        Experiment.scope,
        Experiment.dataset,
        params,
        value,
        Experiment.flags,
        Experiment.spec,
        Experiment.conditions_key,
        Experiment.study_id,
        Experiment.trial_number,
    ).join(Result, Result.experiment_id == Experiment.id, isouter=True)
    q = filtered(q, dataclasses.replace(f, task=task)).where(
        Experiment.status == JobStatus.succeeded, params.is_not(None), value.is_not(None)
    )
    rows = session.execute(q.order_by(Experiment.id).limit(limit)).all()
    out = []
    for r in rows:
        sharing, stacks = spec_sharing_stacks(r[7])
        out.append(
            Point(
                int(r[0]), r[1], r[2], r[3], int(r[4]), float(r[5]), _flags(r[6]), sharing,
                stacks, r[8], r[9], r[10],
            )
        )  # fmt: skip
    return out


@dataclass(frozen=True)
class ComparisonRun:
    id: int
    task: str
    spec: dict[str, Any]
    seed: int | None
    total_params: int | None
    val_acc: float | None
    primary_metric: str | None
    primary_value: float | None
    metrics: Any  # the result's ``metrics`` (last epoch's value by key), or None
    flags: tuple[str, ...] = ()  # guard-rail flags (rpg_core.training.health)
    conditions: dict[str, Any] | None = None  # rpg_core.spec.conditions (None: unknown)
    backbone_params: int | None = None


def comparison_runs(session: Session, f: ListFilter, limit: int = 5_000) -> list[ComparisonRun]:
    """The succeeded runs of a comparison table, oldest first, with their result's ``metrics``
    (read alone from the result JSON: its samples stay in the database)."""
    q: Any = select(
        Experiment.id,
        Experiment.task,
        Experiment.spec,
        Experiment.total_params,
        Experiment.val_acc,
        Experiment.primary_metric,
        Experiment.primary_value,
        Result.data["metrics"],
        Experiment.flags,
        Experiment.conditions,
        Experiment.backbone_params,
    ).join(Result, Result.experiment_id == Experiment.id, isouter=True)
    q = filtered(q, f).where(Experiment.status == JobStatus.succeeded)
    rows = session.execute(q.order_by(Experiment.id).limit(limit)).all()
    out = []
    for r in rows:
        seed = ((r[2] or {}).get("train") or {}).get("seed")
        out.append(
            ComparisonRun(
                int(r[0]), r[1], r[2] or {}, seed if isinstance(seed, int) else None,
                r[3], r[4], r[5], r[6], r[7], _flags(r[8]),
                r[9] if isinstance(r[9], dict) else None, r[10],
            )
        )  # fmt: skip
    return out
