"""Per-epoch metric series and the stored similarity histogram of an experiment."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from .. import crud
from ..deps import ExperimentId, ReadAuth, SessionDep
from ..schemas import MetricsOut, Series

router = APIRouter(prefix="/experiments", tags=["metrics"])


def _exists(session: SessionDep, experiment_id: int) -> None:
    if crud.get_experiment(session, experiment_id) is None:
        raise HTTPException(404, detail=f"experiment {experiment_id} not found")


@router.get("/{experiment_id}/metrics", response_model=MetricsOut)
def metrics(experiment_id: ExperimentId, session: SessionDep, _auth: ReadAuth) -> MetricsOut:
    """Every metric as a series over the epochs (e.g. train_loss, val_acc, lr)."""
    _exists(session, experiment_id)
    series: dict[str, Series] = {}
    for p in sorted(crud.metric_series(session, experiment_id), key=lambda p: (p.name, p.epoch)):
        s = series.setdefault(p.name, Series(epoch=[], value=[]))
        s.epoch.append(p.epoch)
        s.value.append(p.value)
    return MetricsOut(experiment_id=experiment_id, series=series)


@router.get("/{experiment_id}/similarity")
def similarity(experiment_id: ExperimentId, session: SessionDep, _auth: ReadAuth) -> Any:
    """The histogram of kernel similarities the worker stored with the result (404 if none)."""
    _exists(session, experiment_id)
    result = crud.get_result(session, experiment_id) or {}
    hist = result.get("similarity")
    if hist is None:
        raise HTTPException(404, detail=f"experiment {experiment_id} has no similarity histogram")
    return {"experiment_id": experiment_id, "similarity": hist}
