"""The analysis service: power laws of accuracy against backbone parameters, for the REST API
(``GET /api/analysis/power-law``) and the dashboard's figure alike.

``power_law(session, query)`` groups the succeeded runs by (arch, scope, dataset), fits each
group with ``rpg_core.analysis.fit_power_law`` and returns the response model together with the
fitted laws themselves (the dashboard draws a law's curve with its own ``predict``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sqlalchemy.orm import Session

from .crud.listing import ListFilter
from .crud.metrics import Point, gap_points, ood_results, power_law_points
from .deps import PowerLawQuery
from .schemas import OODOut, OODPoint, PowerLawFit, PowerLawOut, PowerLawPoint, PowerLawSeries

log = logging.getLogger(__name__)
MIN_POINTS = 3
BOOTSTRAP = 200  # resampling rounds for the interval of b

SeriesKey = tuple[str, str, str]  # (arch, scope, dataset)


@dataclass(frozen=True)
class PowerLawAnalysis:
    out: PowerLawOut
    laws: dict[SeriesKey, Any] = field(
        default_factory=dict
    )  # the rpg_core fit of each fitted series


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


@lru_cache(maxsize=128)
def _law(params: tuple[int, ...], accuracy: tuple[float, ...]) -> Any:
    """The fit of these exact points (cached: dashboards poll the same finished results)."""
    from rpg_core.analysis.power_law import fit_power_law

    return fit_power_law(list(params), list(accuracy), bootstrap=BOOTSTRAP)


def _fit(law: Any, targets: tuple[float, ...]) -> PowerLawFit:
    ci = law.b_ci
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
    key: SeriesKey, all_points: list[PowerLawPoint], query: PowerLawQuery
) -> tuple[PowerLawSeries, Any]:
    points = [p for p in all_points if query.include_flagged or not p.flags]
    excluded = [p for p in all_points if p.flags and not query.include_flagged]
    out = PowerLawSeries(
        arch=key[0], scope=key[1], dataset=key[2], points=points, fit=None, excluded=excluded
    )
    if len({p.params for p in points}) < MIN_POINTS:
        return out, None
    try:
        law = _law(tuple(p.params for p in points), tuple(p.accuracy for p in points))
        out.fit = _fit(law, query.targets)
    except Exception as err:  # noqa: BLE001 - a failed fit is reported, never a 500
        log.info("power-law fit failed for %s: %s", key, err)
        out.fit_error = str(err)[:500]
        return out, None
    return out, law


def _grouped(rows: Iterable[tuple[Point, float | None]]) -> dict[SeriesKey, list[PowerLawPoint]]:
    """Points (with their gap, if any) grouped by (arch, scope, dataset), in the given order."""
    groups: dict[SeriesKey, list[PowerLawPoint]] = {}
    for p, gap in rows:
        groups.setdefault((p.arch, p.scope, p.dataset), []).append(
            PowerLawPoint(
                experiment_id=p.experiment_id,
                params=p.params,
                accuracy=p.accuracy,
                flags=list(p.flags),
                gap=gap,
            )
        )
    return groups


def power_law(session: Session, query: PowerLawQuery) -> PowerLawAnalysis:
    """Succeeded runs grouped by (arch, scope, dataset), each with its fitted power law (none
    with fewer than 3 distinct sizes); flagged runs are left out of the fit unless
    ``query.include_flagged``. ``quantity="gap"``: the train-validation gap per run instead,
    not fitted."""
    if query.quantity == "gap":
        return PowerLawAnalysis(_gap_series(session, query.filter))
    groups = _grouped((p, None) for p in power_law_points(session, query.filter, query.metric))
    series, laws = [], {}
    for key, points in sorted(groups.items()):
        s, law = _series(key, points, query)
        series.append(s)
        if law is not None:
            laws[key] = law
    return PowerLawAnalysis(
        PowerLawOut(metric=query.metric, fit_available=True, series=series), laws
    )


def _gap_series(session: Session, f: ListFilter) -> PowerLawOut:
    """The train-validation gap per run, grouped as the power law (no fit)."""
    groups = _grouped(gap_points(session, f))
    series = [
        PowerLawSeries(arch=k[0], scope=k[1], dataset=k[2], points=pts, fit=None)
        for k, pts in sorted(groups.items())
    ]
    return PowerLawOut(metric="val_acc", quantity="gap", fit_available=False, series=series)


def ood_values(raw: Any) -> dict[str, float]:
    """The finite per-set accuracies of a result's ``ood`` (eval.ood)."""
    out: dict[str, float] = {}
    for k, v in (raw or {}).items():
        value = _finite(v)
        if isinstance(k, str) and value is not None:
            out[k] = value
    return out


def ood(session: Session, f: ListFilter) -> OODOut:
    """In-distribution against out-of-distribution accuracy: one point per succeeded run that
    was scored on eval.ood sets, with its accuracy per set (oldest first)."""
    points = [
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
        for exp, result in ood_results(session, f)
    ]
    return OODOut(points=points)
