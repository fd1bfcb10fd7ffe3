"""Reads of what runs measured: metric series per epoch and (params, accuracy) points."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import Experiment, MetricPoint, Result
from .listing import ListFilter, filtered


def metric_series(session: Session, experiment_id: int, after_id: int = 0) -> list[MetricPoint]:
    q = (
        select(MetricPoint)
        .where(MetricPoint.experiment_id == experiment_id, MetricPoint.id > after_id)
        .order_by(MetricPoint.id)
    )
    return list(session.scalars(q))


@dataclass(frozen=True)
class Point:
    experiment_id: int
    arch: str
    scope: str
    dataset: str
    params: int
    accuracy: float
    flags: tuple[str, ...] = ()  # guard-rail flags (rpg_core.health)


def power_law_points(
    session: Session, f: ListFilter, metric: str = "best_val_acc", limit: int = 10_000
) -> list[Point]:
    """(params, accuracy) of succeeded runs with both set, oldest first (columns only)."""
    col = getattr(Experiment, metric)
    q = select(
        Experiment.id,
        Experiment.arch,
        Experiment.scope,
        Experiment.dataset,
        Experiment.backbone_params,
        col,
        Experiment.flags,
    )
    q = filtered(q, f).where(
        Experiment.status == "succeeded",
        Experiment.backbone_params.is_not(None),
        col.is_not(None),
    )
    rows = session.execute(q.order_by(Experiment.id).limit(limit)).all()
    return [
        Point(int(r[0]), r[1], r[2], r[3], int(r[4]), float(r[5]), tuple((r[6] or "").split(",")))
        if r[6]
        else Point(int(r[0]), r[1], r[2], r[3], int(r[4]), float(r[5]))
        for r in rows
    ]


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
    )
    q = filtered(q, f).where(
        Experiment.status == "succeeded",
        Experiment.backbone_params.is_not(None),
        Experiment.val_acc.is_not(None),
        Experiment.train_acc.is_not(None),
    )
    rows = session.execute(q.order_by(Experiment.id).limit(limit)).all()
    flags = [tuple(str(c) for c in str(r[6] or "").split(",") if c) for r in rows]
    return [
        (Point(int(r[0]), r[1], r[2], r[3], int(r[4]), float(r[5]), fl), float(r[7]) - float(r[5]))
        for r, fl in zip(rows, flags, strict=True)
    ]


def ood_results(
    session: Session, f: ListFilter, limit: int = 2_000
) -> list[tuple[Experiment, dict[str, Any]]]:
    """Succeeded runs whose result holds out-of-distribution accuracies (eval.ood), oldest
    first, with their result JSON."""
    q = select(Experiment, Result.data).join(Result, Result.experiment_id == Experiment.id)
    q = filtered(q, f).where(Experiment.status == "succeeded")
    rows = session.execute(q.order_by(Experiment.id).limit(limit)).all()
    return [(r[0], r[1]) for r in rows if isinstance(r[1], dict) and r[1].get("ood")]
