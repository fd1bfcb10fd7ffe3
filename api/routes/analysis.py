"""Power-law analysis across experiments: accuracy against backbone parameters."""

from __future__ import annotations

import importlib
import logging
import math
from functools import lru_cache
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import Field

from .. import crud
from ..deps import MAX_ID, ReadAuth, SessionDep, StrictDigits
from ..schemas import (
    OODOut,
    OODPoint,
    PowerLawFit,
    PowerLawOut,
    PowerLawPoint,
    PowerLawSeries,
)
from ..validation import TAG_QUERY_PATTERN

log = logging.getLogger(__name__)
router = APIRouter(prefix="/analysis", tags=["analysis"])
Label = Annotated[str, Query(max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")]
Accuracy = Annotated[float, Field(gt=0, lt=1)]
MIN_POINTS = 3
BOOTSTRAP = 200  # resampling rounds for the interval of b


def _fitter() -> Any:
    try:
        module = importlib.import_module("rpg_core.analysis")
    except ImportError:
        return None
    return getattr(module, "fit_power_law", None)


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


@lru_cache(maxsize=128)
def _law(fitter: Any, params: tuple[int, ...], accuracy: tuple[float, ...]) -> Any:
    """The fit of these exact points (cached: dashboards poll the same finished results)."""
    return fitter(list(params), list(accuracy), bootstrap=BOOTSTRAP)


def _fit(fitter: Any, points: list[PowerLawPoint], targets: list[float]) -> PowerLawFit:
    law = _law(fitter, tuple(p.params for p in points), tuple(p.accuracy for p in points))
    ci = getattr(law, "b_ci", None) or getattr(law, "ci", None)
    b_ci = [v for v in (_finite(c) for c in ci) if v is not None] if ci is not None else None
    params_for = {}
    for t in targets:
        try:
            params_for[str(t)] = _finite(law.params_for(t))
        except (ValueError, ArithmeticError):
            params_for[str(t)] = None
    return PowerLawFit(
        a=_finite(law.a) or 0.0,
        b=_finite(law.b) or 0.0,
        r2=_finite(law.r2) or 0.0,
        b_ci=b_ci,
        params_for=params_for,
    )


def _series(
    key: tuple[str, str, str],
    all_points: list[PowerLawPoint],
    fitter: Any,
    targets: list[float],
    include_flagged: bool = False,
) -> PowerLawSeries:
    points = [p for p in all_points if include_flagged or not p.flags]
    excluded = [p for p in all_points if p.flags and not include_flagged]
    out = PowerLawSeries(
        arch=key[0], scope=key[1], dataset=key[2], points=points, fit=None, excluded=excluded
    )
    if fitter is None or len({p.params for p in points}) < MIN_POINTS:
        return out
    try:
        out.fit = _fit(fitter, points, targets)
    except Exception as err:  # noqa: BLE001 - a failed fit is reported, never a 500
        log.info("power-law fit failed for %s: %s", key, err)
        out.fit_error = str(err)[:500]
    return out


@router.get("/power-law", response_model=PowerLawOut)
def power_law(
    session: SessionDep,
    _auth: ReadAuth,
    sweep: Annotated[int | None, Query(ge=1, le=MAX_ID), StrictDigits] = None,
    arch: Label | None = None,
    dataset: Label | None = None,
    scope: Label | None = None,
    tag: Annotated[str | None, Query(max_length=64, pattern=TAG_QUERY_PATTERN)] = None,
    metric: Literal["best_val_acc", "val_acc"] = "best_val_acc",
    target: Annotated[
        list[Accuracy] | None,
        Query(max_length=16, description="accuracies to predict params for"),
    ] = None,
    include_flagged: Annotated[
        bool, Query(description="also fit runs the guard rails flagged (diverged, near chance)")
    ] = False,
    quantity: Annotated[
        Literal["accuracy", "gap"],
        Query(
            description="accuracy: the metric, with fitted power laws; gap: train accuracy minus "
            "final validation accuracy per run (metric ignored, not fitted)"
        ),
    ] = "accuracy",
) -> PowerLawOut:
    """Succeeded runs grouped by (arch, scope, dataset), each with its fitted power law
    (null with fewer than 3 distinct sizes). Flagged runs are listed under ``excluded`` and
    left out of the fit unless ``include_flagged``."""
    f = crud.ListFilter(arch=arch, dataset=dataset, sweep_id=sweep, tag=tag, scope=scope)
    if quantity == "gap":
        return _gap_series(session, f)
    groups: dict[tuple[str, str, str], list[PowerLawPoint]] = {}
    for p in crud.power_law_points(session, f, metric):
        groups.setdefault((p.arch, p.scope, p.dataset), []).append(
            PowerLawPoint(
                experiment_id=p.experiment_id,
                params=p.params,
                accuracy=p.accuracy,
                flags=list(p.flags),
            )
        )
    fitter = _fitter()
    series = [
        _series(k, pts, fitter, target or [], include_flagged) for k, pts in sorted(groups.items())
    ]
    return PowerLawOut(metric=metric, fit_available=fitter is not None, series=series)


def _gap_series(session: SessionDep, f: crud.ListFilter) -> PowerLawOut:
    """The train-validation gap per run, grouped as the power law (no fit)."""
    groups: dict[tuple[str, str, str], list[PowerLawPoint]] = {}
    for p, gap in crud.gap_points(session, f):
        groups.setdefault((p.arch, p.scope, p.dataset), []).append(
            PowerLawPoint(
                experiment_id=p.experiment_id,
                params=p.params,
                accuracy=p.accuracy,
                flags=list(p.flags),
                gap=gap,
            )
        )
    series = [
        PowerLawSeries(arch=k[0], scope=k[1], dataset=k[2], points=pts, fit=None)
        for k, pts in sorted(groups.items())
    ]
    return PowerLawOut(metric="val_acc", quantity="gap", fit_available=False, series=series)


def ood_values(raw: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in (raw or {}).items():
        value = _finite(v)
        if isinstance(k, str) and value is not None:
            out[k] = value
    return out


@router.get("/ood", response_model=OODOut)
def ood(
    session: SessionDep,
    _auth: ReadAuth,
    sweep: Annotated[int | None, Query(ge=1, le=MAX_ID), StrictDigits] = None,
    arch: Label | None = None,
    dataset: Label | None = None,
    scope: Label | None = None,
    tag: Annotated[str | None, Query(max_length=64, pattern=TAG_QUERY_PATTERN)] = None,
) -> OODOut:
    """In-distribution against out-of-distribution accuracy: one point per succeeded run that
    was scored on eval.ood sets, with its accuracy per set (oldest first)."""
    f = crud.ListFilter(arch=arch, dataset=dataset, sweep_id=sweep, tag=tag, scope=scope)
    points = []
    for exp, result in crud.ood_results(session, f):
        points.append(
            OODPoint(
                experiment_id=exp.id,
                name=exp.name,
                arch=exp.arch,
                scope=exp.scope,
                dataset=exp.dataset,
                backbone_params=exp.backbone_params,
                val_acc=exp.val_acc,
                train_acc=exp.train_acc,
                ood_acc=_finite(result.get("ood_acc")),
                ood=ood_values(result.get("ood")),
            )
        )
    return OODOut(points=points)
