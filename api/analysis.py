"""The analysis service: power laws of accuracy against backbone parameters, for the REST API
(``GET /api/analysis/power-law``) and the dashboard's figure alike.

``power_law(session, query)`` groups the succeeded runs by (arch, scope, dataset), fits each
group with ``rpg_core.analysis.fit_power_law`` and returns the response model together with the
fitted laws themselves (the dashboard draws a law's curve with its own ``predict``).
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sqlalchemy.orm import Session

from rpg_core.catalog.tasks import task_info

from .crud.listing import ListFilter
from .crud.metrics import (
    Point,
    comparison_runs,
    gap_points,
    ood_results,
    power_law_points,
    spec_sharing_stacks,
    task_metric_points,
)
from .deps import PowerLawQuery
from .schemas import (
    ComparisonCell,
    ComparisonOut,
    ComparisonPlace,
    MetricStat,
    OODOut,
    OODPoint,
    PowerLawFit,
    PowerLawOut,
    PowerLawPoint,
    PowerLawSeries,
)

log = logging.getLogger(__name__)
MIN_POINTS = 3
BOOTSTRAP = 200  # resampling rounds for the interval of b

# (arch, scope, dataset, sharing, stacks); sharing and stacks None for unstacked models
SeriesKey = tuple[str, str, str, str | None, int | None]


def series_key_of(series: Any) -> SeriesKey:
    """The key of a response series (a PowerLawSeries or its dict)."""
    d = series if isinstance(series, dict) else series.model_dump()
    stacks = d.get("stacks")
    return (
        str(d["arch"]),
        str(d["scope"]),
        str(d["dataset"]),
        d.get("sharing"),
        int(stacks) if stacks is not None else None,
    )


@dataclass(frozen=True)
class MetricLaw:
    """A fitted law in the metric's own terms. rpg_core fits ``1 - accuracy = a * P^(-b)``
    with accuracies in (0, 1): a higher-is-better metric (acc, PCKh) is that accuracy (the
    fitted quantity is ``1 - metric``); a lower-is-better one (an RMSE) is fitted itself, as
    ``1 - metric / scale`` with ``scale`` above every value (b, R^2 and its interval do not
    change with the scale; ``a`` is scaled back)."""

    law: Any
    higher_is_better: bool = True
    scale: float = 1.0

    @property
    def a(self) -> float:
        return float(self.law.a) * (1.0 if self.higher_is_better else self.scale)

    @property
    def b(self) -> float:
        return float(self.law.b)

    @property
    def r2(self) -> float:
        return float(self.law.r2)

    @property
    def b_ci(self) -> Any:
        return self.law.b_ci

    def predict(self, params: Any) -> Any:
        """The metric's predicted value at ``params`` (a float, or an array)."""
        acc = self.law.predict(params)
        return acc if self.higher_is_better else self.scale * (1.0 - acc)

    def params_for(self, target: float) -> float:
        """The parameter count at which the metric reaches ``target``."""
        if self.higher_is_better:
            return float(self.law.params_for(target))
        return float(self.law.params_for(1.0 - target / self.scale))


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


def _metric_law(
    params: tuple[int, ...], values: tuple[float, ...], higher_is_better: bool
) -> MetricLaw:
    if higher_is_better:
        return MetricLaw(_law(params, values))
    if min(values) <= 0:
        raise ValueError("a lower-is-better metric must be > 0 to be fitted in log space")
    scale = 2.0 * max(values)
    return MetricLaw(_law(params, tuple(1.0 - v / scale for v in values)), False, scale)


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
    key: SeriesKey, all_points: list[PowerLawPoint], query: PowerLawQuery, higher: bool = True
) -> tuple[PowerLawSeries, Any]:
    points = [p for p in all_points if query.include_flagged or not p.flags]
    excluded = [p for p in all_points if p.flags and not query.include_flagged]
    out = PowerLawSeries(
        arch=key[0],
        scope=key[1],
        dataset=key[2],
        sharing=key[3],
        stacks=key[4],
        points=points,
        fit=None,
        excluded=excluded,
    )
    if len({p.params for p in points}) < MIN_POINTS:
        return out, None
    try:
        pts = (tuple(p.params for p in points), tuple(p.accuracy for p in points))
        law = _law(*pts) if query.task == "classification" else _metric_law(*pts, higher)
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
        groups.setdefault((p.arch, p.scope, p.dataset, p.sharing, p.stacks), []).append(
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
    task = task_info(query.task)
    if query.task == "classification":
        column = "val_acc" if query.metric == "acc" else query.metric
        rows = power_law_points(session, query.filter, column)
        info = task.metric("acc")
    else:
        rows = task_metric_points(session, query.filter, query.task, query.metric)
        info = task.metric(query.metric)
    groups = _grouped((p, None) for p in rows)
    series, laws = [], {}
    for key, points in sorted(groups.items(), key=lambda kv: _sortable(kv[0])):
        s, law = _series(key, points, query, info.higher_is_better)
        series.append(s)
        if law is not None:
            laws[key] = law
    out = PowerLawOut(
        metric=query.metric,
        fit_available=True,
        series=series,
        task=query.task,
        label=_label(query.metric, info.label),
        higher_is_better=info.higher_is_better,
        fitted=f"1 - {query.metric}" if info.higher_is_better else query.metric,
        unit=info.unit,
    )
    return PowerLawAnalysis(out, laws)


def _label(metric: str, label: str) -> str:
    return {"best_val_acc": "best val accuracy", "val_acc": "final val accuracy"}.get(metric, label)


def _sortable(key: SeriesKey) -> tuple[str, str, str, str, int]:
    return (key[0], key[1], key[2], key[3] or "", key[4] or 0)


def _gap_series(session: Session, f: ListFilter) -> PowerLawOut:
    """The train-validation gap per run, grouped as the power law (no fit)."""
    groups = _grouped(gap_points(session, f))
    series = [
        PowerLawSeries(
            arch=k[0], scope=k[1], dataset=k[2], sharing=k[3], stacks=k[4], points=pts, fit=None
        )
        for k, pts in sorted(groups.items(), key=lambda kv: _sortable(kv[0]))
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


# ----------------------------------------------------------------------------- comparison


class ComparisonError(ValueError):
    """A comparison query that cannot be answered (its field named): a 422."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _stat(values: list[float]) -> MetricStat:
    return MetricStat(
        mean=statistics.fmean(values),
        min=min(values),
        max=max(values),
        std=statistics.pstdev(values) if len(values) > 1 else 0.0,
        n=len(values),
    )


def comparison(session: Session, f: ListFilter, task: str | None) -> ComparisonOut:
    """The paper's Tables 4 and 5 over succeeded runs: one row per sharing variant, one column
    per number of sub-networks (stacks); each cell the mean, min, max and spread over its runs
    (seeds) of each of the task's metrics, its parameter count and run count, and the best cell
    per metric marked (``best``: the highest mean for a higher-is-better metric, the lowest
    otherwise). Without ``task`` the runs' own task is used (a 422 if they mix tasks)."""
    runs = comparison_runs(session, f)
    tasks = sorted({r.task for r in runs})
    if task is None:
        if len(tasks) > 1:
            raise ComparisonError(
                "task", f"these runs mix tasks ({', '.join(tasks)}); choose one with ?task="
            )
        task = tasks[0] if tasks else "classification"
    info = task_info(task)
    groups: dict[tuple[str | None, int | None], list[Any]] = {}
    for r in runs:
        if r.task == task:
            groups.setdefault(spec_sharing_stacks(r.spec), []).append(r)
    cells: list[ComparisonCell] = []
    for (sharing, stacks), members in groups.items():
        stats: dict[str, MetricStat] = {}
        for m in info.metrics:
            values = [v for r in members if (v := _run_metric(r, m.key)) is not None]
            if values:
                stats[m.key] = _stat(values)
        params = [int(r.total_params) for r in members if r.total_params is not None]
        cells.append(
            ComparisonCell(
                sharing=sharing,
                stacks=stacks,
                n=len(members),
                experiment_ids=[r.id for r in members],
                seeds=[r.seed for r in members],
                total_params=round(statistics.fmean(params)) if params else None,
                total_params_min=min(params) if params else None,
                total_params_max=max(params) if params else None,
                metrics=stats,
            )
        )
    order = {s: i for i, s in enumerate(info.sharing)}
    cells.sort(
        key=lambda c: (order.get(c.sharing or "", len(order)), c.sharing or "", c.stacks or 0)
    )
    best: dict[str, list[ComparisonPlace]] = {}
    for m in info.metrics:
        scored = [c for c in cells if m.key in c.metrics]
        if not scored:
            continue
        top = (max if m.higher_is_better else min)(c.metrics[m.key].mean for c in scored)
        for c in scored:
            if math.isclose(c.metrics[m.key].mean, top, rel_tol=1e-12, abs_tol=1e-15):
                c.best.append(m.key)
                best.setdefault(m.key, []).append(
                    ComparisonPlace(sharing=c.sharing, stacks=c.stacks)
                )
    return ComparisonOut(
        task=task,
        metrics=[m.as_dict() for m in info.metrics],
        sharing=list(dict.fromkeys(c.sharing for c in cells)),
        stacks=sorted({c.stacks for c in cells if c.stacks is not None}),
        cells=cells,
        best=best,
        runs=sum(c.n for c in cells),
    )


def _run_metric(run: Any, key: str) -> float | None:
    metrics = run.metrics if isinstance(run.metrics, dict) else {}
    value = _finite(metrics.get(key))
    if value is None and run.primary_metric == key:
        value = _finite(run.primary_value)
    if value is None and key == "acc":
        value = _finite(run.val_acc)
    return value
