"""The analysis service: power laws of a metric against backbone parameters, for the REST API
(``GET /api/analysis/power-law``) and the dashboard's figure alike, and the comparison table.

Comparable by construction: a series (one fit) and a table pool only runs of the same
conditions (``rpg_core.spec.conditions``, stored with each run as ``conditions_key``): mixed
conditions become separate series, never one fit. ``power_law(session, query)`` groups the
succeeded runs by that key, fits each group with ``rpg_core.analysis.fit_power_law`` over every
replicate and returns the response model together with the fitted laws themselves (the
dashboard draws a law's curve with its own ``predict``). A metric's direction is read from its
``rpg_core.catalog.tasks.MetricInfo`` (the one owner), never decided here.
"""

from __future__ import annotations

import logging
import math
import statistics
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from rpg_core.analysis.readable import params_needed_text
from rpg_core.catalog.methods import METHODS
from rpg_core.catalog.tasks import MetricInfo, task_info
from rpg_core.spec.conditions import (
    METHOD_KNOBS,
    SIZE_KNOBS,
    comparable,
    describe,
    differences,
    field_label,
    key_of,
    method_of,
    table_key,
)

from .crud.listing import ListFilter
from .crud.metrics import (
    Point,
    comparison_runs,
    condition_of_succeeded,
    conditions_of_runs,
    gap_points,
    model_file_sizes,
    ood_results,
    power_law_points,
    results_version,
    spec_sharing_stacks,
    task_metric_points,
)
from .deps import PowerLawQuery
from .schemas import (
    BudgetCell,
    BudgetRow,
    BudgetTable,
    ComparisonCell,
    ComparisonGroup,
    ComparisonOut,
    ComparisonPlace,
    MetricStat,
    OODOut,
    OODPoint,
    PowerLawFit,
    PowerLawOut,
    PowerLawPoint,
    PowerLawSeries,
    PowerLawSize,
)
from .search import trials_of

log = logging.getLogger(__name__)
MIN_POINTS = 3
BOOTSTRAP = 200  # resampling rounds for the interval of b

SeriesKey = str  # a series' conditions key ("unknown:<arch>:<scope>:<dataset>" without one)


def series_key_of(series: Any) -> SeriesKey:
    """The key of a response series (a PowerLawSeries or its dict)."""
    d = series if isinstance(series, dict) else series.__dict__  # its fields, not a dump
    return _group_of(d.get("conditions_key"), str(d["arch"]), str(d["scope"]), str(d["dataset"]))


def _group_of(key: str | None, arch: str, scope: str, dataset: str) -> SeriesKey:
    return key if key is not None else f"unknown:{arch}:{scope}:{dataset}"


def metric_of(task: str, metric: str) -> MetricInfo:
    """The MetricInfo a power law of ``metric`` reads (classification's accuracy columns,
    best_val_acc and val_acc, are the task's ``acc``)."""
    return task_info(task).metric_info(metric)


@dataclass(frozen=True)
class MetricLaw:
    """A fitted law in the metric's own terms. rpg_core fits ``1 - accuracy = a * P^(-b)``
    with accuracies in (0, 1); the metric's error (``MetricInfo.as_error``: ``1 - metric``
    for a higher-is-better one, the metric itself otherwise) is fitted as ``error / scale``
    with ``scale`` 1, or above every error when one reaches 1 (an RMSE): b, R^2 and its
    interval do not change with the scale, ``a`` is scaled back."""

    law: Any
    metric: MetricInfo
    scale: float = 1.0

    @property
    def a(self) -> float:
        return float(self.law.a) * self.scale

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
        return self.metric.from_error(self.scale * (1.0 - self.law.predict(params)))

    def params_for(self, target: float) -> float:
        """The parameter count at which the metric reaches ``target``."""
        return float(self.law.params_for(1.0 - self.metric.as_error(target) / self.scale))


@dataclass(frozen=True)
class PowerLawAnalysis:
    out: PowerLawOut
    laws: dict[SeriesKey, MetricLaw] = field(default_factory=dict)  # by series_key_of


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


@lru_cache(maxsize=128)
def _law(params: tuple[int, ...], accuracy: tuple[float, ...]) -> Any:
    """The fit of these exact points (cached: dashboards poll the same finished results). The
    power form only: the answer and the figure read its a, b, R^2 and interval, never the
    saturating form (a 192-point search for ``c``, half the fits' time at 10,000 points)."""
    from rpg_core.analysis.power_law import fit_power_law

    return fit_power_law(list(params), list(accuracy), bootstrap=BOOTSTRAP, saturating=False)


def metric_law(params: Sequence[int], values: Sequence[float], metric: MetricInfo) -> MetricLaw:
    """The power law of a metric's error against params (every replicate a point)."""
    errors = [metric.as_error(v) for v in values]
    if min(errors) <= 0:
        raise ValueError(
            f"a {metric.key} error ({metric.fitted()}) of 0 or below cannot be fitted in log "
            f"space: a perfect run leaves nothing to fit"
        )
    scale = 1.0 if max(errors) < 1.0 else 2.0 * max(errors)
    law = _law(tuple(params), tuple(1.0 - e / scale for e in errors))
    return MetricLaw(law, metric, scale)


def _fit(law: MetricLaw, targets: tuple[float, ...], sizes: Sequence[float]) -> PowerLawFit:
    ci = law.b_ci
    b_ci = [v for v in (_finite(c) for c in ci) if v is not None] if ci is not None else None
    params_for: dict[str, float | None] = {}
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
        params_for_text={k: params_needed_text(v, sizes) for k, v in params_for.items()},
    )


def _sizes(points: Sequence[PowerLawPoint], gap: bool = False) -> list[PowerLawSize]:
    """The points by size: the mean and spread of the replicates of each parameter count."""
    by: dict[int, list[PowerLawPoint]] = {}
    for p in points:
        by.setdefault(p.params, []).append(p)
    out = []
    for params in sorted(by):
        reps = by[params]
        vals = [float(p.gap) if gap and p.gap is not None else p.value for p in reps]
        out.append(  # built from checked values: no validation round (1,000 sizes per figure)
            PowerLawSize.model_construct(
                params=params,
                n=len(vals),
                mean=statistics.fmean(vals) if len(vals) > 1 else vals[0],
                min=min(vals),
                max=max(vals),
                std=statistics.pstdev(vals) if len(vals) > 1 else 0.0,
                experiment_ids=[p.experiment_id for p in reps],
            )
        )
    return out


@dataclass
class _Group:
    """The runs of one conditions key."""

    key: SeriesKey
    conditions_key: str | None
    first: Point
    points: list[PowerLawPoint] = field(default_factory=list)
    conditions: dict[str, Any] = field(default_factory=dict)
    backbone: list[PowerLawPoint] | None = None  # x=bytes: the points at backbone params
    searched: tuple[str, ...] = ()  # a tuned group: the knobs its studies searched

    @property
    def latest(self) -> int:
        return max(p.experiment_id for p in self.points)

    @property
    def method(self) -> str | None:
        """The method of the group's runs (rpg_core.spec.conditions.method_of); None for runs
        of unknown conditions."""
        return method_of(self.conditions) if self.conditions else None


def _grouped(
    session: Session,
    rows: Iterable[tuple[Point, float | None]],
    trials: Mapping[int, TrialPoint] | None = None,
) -> list[_Group]:
    """Points (with their gap, if any) grouped by conditions key, in the given order, each
    group with its conditions (read from one of its runs) less the size knobs; a search trial's
    point (``trials``) carries its trial number, and a tuned group leaves its searched knobs out
    of its conditions too."""
    trials = trials or {}
    groups: dict[SeriesKey, _Group] = {}
    for p, gap in rows:  # 10,000 points: what a point leaves to its defaults is not passed
        key = p.conditions_key
        if key is None:
            key = _group_of(None, p.arch, p.scope, p.dataset)
        g = groups.get(key)
        if g is None:
            g = groups[key] = _Group(key, p.conditions_key, p)
        t = trials.get(p.experiment_id) if trials else None
        if p.flags or gap is not None or t is not None:
            point = PowerLawPoint(
                experiment_id=p.experiment_id,
                params=p.params,
                value=p.value,
                flags=list(p.flags),
                gap=gap,
                trial=t.number if t is not None else None,
            )
        else:
            point = PowerLawPoint(experiment_id=p.experiment_id, params=p.params, value=p.value)
        g.points.append(point)
        if t is not None and t.tuned:
            g.searched = t.searched
    stored = conditions_of_runs(
        session, [g.first.experiment_id for g in groups.values() if g.conditions_key]
    )
    for g in groups.values():
        c = stored.get(g.first.experiment_id)
        g.conditions = comparable(c, (*SIZE_KNOBS, *g.searched)) if c else {}
    return list(groups.values())


def _value_text(v: Any) -> str:
    if v is None:
        return "default"
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _base_label(p: Point) -> str:
    key = f"{p.arch} · {p.scope} · {p.dataset}"
    if p.sharing:
        key += f" · sharing {p.sharing} · {p.stacks} stacks"
    return key


def _labels(groups: Sequence[_Group]) -> dict[SeriesKey, str]:
    """Each group's name: arch, scope and dataset, and where two groups share those, the
    values of the conditions that set them apart (``epochs 3``)."""
    by_base: dict[str, list[_Group]] = {}
    for g in groups:
        by_base.setdefault(_base_label(g.first), []).append(g)
    # where runs name their method (a spec's method section), every series is named by its
    # method first, and what the method decides no longer sets series apart
    named = any("method.name" in g.conditions for g in groups)
    out = {}
    for base, members in by_base.items():
        paths: set[str] = set()
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                paths.update(differences(a.conditions, b.conditions))
        if named:
            paths = {p for p in paths if p.split(".")[0] != "method" and p != "rpg.generator"}
        for g in members:
            first = f"{g.method} · {base}" if named and g.method else base
            if g.conditions_key is None and len(members) > 1:
                out[g.key] = f"{first} · conditions unknown"
                continue
            extra = [f"{field_label(k)} {_value_text(g.conditions.get(k))}" for k in sorted(paths)]
            out[g.key] = f"{first} · {', '.join(extra[:4])}" if extra else first
    return out


def _describe(g: _Group) -> str:
    if g.conditions_key is None or not g.conditions:
        return "conditions unknown (a run submitted before conditions were recorded)"
    return describe(g.conditions)


def _runs(n: int) -> str:
    return f"{n} run{'' if n == 1 else 's'}"


def _section_text(path: str) -> str:
    """What an absent value says: a whole section left out (no ``rpg``: plain networks)."""
    return {"rpg": "none: plain networks", "prune": "none"}.get(path, "default")


def _present_text(path: str) -> str:
    """What a section present in these runs and absent from the focus says."""
    return {"rpg": "a ring", "prune": "pruned"}.get(path, "set")


def _clause(focus: Mapping[str, Any], c: Mapping[str, Any], runs: int) -> str:
    """``3 runs differ in epochs (10)``: a group set apart, with its own values."""
    if not focus or not c:
        return f"{_runs(runs)} of unknown conditions"
    diff = differences(focus, c)
    named = [
        f"{field_label(d)} ({_section_text(d) if c.get(d) is None else _value_text(c.get(d))})"
        if d in c
        else f"{field_label(d)} ({_present_text(d)})"
        for d in diff[:3]
    ]
    more = f" and {len(diff) - 3} more" if len(diff) > 3 else ""
    verb = "differs" if runs == 1 else "differ"
    return f"{_runs(runs)} {verb} in {', '.join(named)}{more}"


def summary_of(
    focus: Mapping[str, Any] | None,
    focus_runs: int,
    others: Sequence[tuple[Mapping[str, Any], int]],
    apart: str = "shown as a separate series",
) -> str:
    """What a figure or table pooled and what it left apart, in words: ``4 runs: <their
    conditions>; 2 other runs differ in epochs (10) and are shown as a separate series``."""
    if focus is None:
        return ""
    text = f"{_runs(focus_runs)}: {describe(focus) if focus else 'conditions unknown'}"
    if not others:
        return text + "."
    clauses = [_clause(focus, c, n) for c, n in others[:3]]
    if len(others) > 3:
        rest = sum(n for _, n in others[3:])
        clauses.append(f"{_runs(rest)} in {len(others) - 3} more groups")
    n = sum(r for _, r in others)
    first = clauses[0].replace("run", "other run", 1)
    listed = "; ".join([first, *clauses[1:]])
    if len(others) == 1:
        return f"{text}; {listed} and {'is' if n == 1 else 'are'} {apart}."
    return f"{text}; {listed}: each group is {apart.replace('shown as ', '')}, never pooled."


_T = TypeVar("_T")


class AnswerCache:
    """Answers computed from the succeeded runs (the power law's JSON, its figure's), kept per
    query while the data they come from is unchanged: an entry is keyed by the database, the
    caller's key and ``crud.metrics.results_version`` (read on every call, so a run that
    succeeds, is flagged, deleted or gets its model file is seen by the next request). Per
    process, the ``size`` most recent answers. An answer is bytes (a response body) or an
    object its callers only read (``power_law_cached``'s analysis, laws included)."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._answers: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, session: Session, key: Any, compute: Callable[[], _T]) -> _T:
        full = (str(session.get_bind().engine.url), key, results_version(session))
        with self._lock:
            answer = self._answers.get(full)
            if answer is not None:
                self._answers.move_to_end(full)
                self.hits += 1
                return answer
        answer = compute()  # outside the lock: two first requests may both compute
        with self._lock:
            self.misses += 1
            self._answers[full] = answer
            self._answers.move_to_end(full)
            while len(self._answers) > self.size:
                self._answers.popitem(last=False)
        return answer

    def clear(self) -> None:
        with self._lock:
            self._answers.clear()


ANSWERS = AnswerCache()  # the power law's answers (api.routes.analysis, frontend.routes)


@dataclass(frozen=True)
class TrialPoint:
    """A search trial among the power law's points: its number (the order its study asked it)
    and, for a tuning study's best trial, the knobs searched (left out of its series' key)."""

    number: int
    tuned: bool = False
    searched: tuple[str, ...] = ()


def _search_points(
    session: Session, rows: list[Point], metric: MetricInfo, tuned: bool
) -> tuple[list[Point], dict[int, TrialPoint]]:
    """The points of search trials made comparable (``docs/SEARCH.md``): a tuning study's trials
    differ in the searched knobs, so its best trial alone stands for its grid point, in a
    *tuned* series keyed by the conditions less the size and the searched knobs (one study per
    size and seed: the seeds stay replicates); with ``tuned`` false they are left out. A
    power-law study searched a size knob: its trials are points like any other, numbered."""
    trials = trials_of(session, ((p.experiment_id, p.study_id, p.trial_number) for p in rows))
    if not trials:
        return rows, {}
    out: list[Point] = []
    best: dict[int, Point] = {}
    marks: dict[int, TrialPoint] = {}
    for p in rows:
        t = trials.get(p.experiment_id)
        if t is None:
            out.append(p)
        elif t.sampler == "power-law":
            out.append(p)
            marks[p.experiment_id] = TrialPoint(t.number)
        elif tuned:
            top = best.get(t.study_id)
            if top is None or metric.better(p.value, top.value):
                best[t.study_id] = p
    for p in best.values():
        t = trials[p.experiment_id]
        # a key of its own (hex like any): the tuned series never pools with untuned runs
        key = key_of({**t.base_conditions, "search": "tuned"}, (*SIZE_KNOBS, *t.searched))
        out.append(p._replace(conditions_key=key))
        marks[p.experiment_id] = TrialPoint(t.number, tuned=True, searched=t.searched)
    out.sort(key=lambda p: p.experiment_id)
    return out, marks


def warm_power_law(sessions: Callable[[], Session]) -> None:
    """Pay the first power law's one-off costs at start-up, reading no data: numpy.random's
    and numpy.ma's imports and a first fit (a tiny one, never cached), the ORM's mapper
    configuration and the points' compiled SELECT (run with LIMIT 0). About 0.1 s that the
    first answer of each process otherwise paid. Never fails (a database not reachable yet
    leaves the SELECT to the first request)."""
    from sqlalchemy.orm import configure_mappers

    from rpg_core.analysis.power_law import fit_power_law

    fit_power_law([1e3, 2e3, 4e3, 8e3, 16e3], [0.5, 0.6, 0.7, 0.75, 0.8], bootstrap=4)
    configure_mappers()
    try:
        with sessions() as session:
            power_law_points(session, ListFilter(), limit=0)
    except Exception:  # noqa: BLE001 - a warm-up never stops the server
        log.info("power-law warm-up: no database yet; the first request compiles its SELECT")


def power_law_cached(session: Session, query: PowerLawQuery) -> PowerLawAnalysis:
    """``power_law`` computed once per query but its prediction targets and per data version
    (``ANSWERS``): the API's answers and the dashboard's figures of one filter share one
    computation (the 10,000 points, the groups, the fits); the targets' predictions are then
    made from the cached laws (``_fit``, as ``power_law`` makes them). Callers must not modify
    the result."""
    base_query = replace(query, targets=())
    base = ANSWERS.get(session, ("analysis", base_query), lambda: power_law(session, base_query))
    if not query.targets:
        return base
    series = []
    for s in base.out.series:
        law = base.laws.get(series_key_of(s))
        if s.fit is not None and law is not None:
            fit = _fit(law, query.targets, [float(p.params) for p in s.points])
            s = s.model_copy(update={"fit": fit})
        series.append(s)
    return PowerLawAnalysis(base.out.model_copy(update={"series": series}), base.laws)


def power_law(session: Session, query: PowerLawQuery) -> PowerLawAnalysis:
    """Succeeded runs grouped by their conditions (one series per conditions key), each with
    its fitted power law over every replicate (none with fewer than 3 distinct sizes); flagged
    runs are left out of the fit unless ``query.include_flagged``. ``quantity="gap"``: the
    train-validation gap per run instead, not fitted."""
    if query.quantity == "gap":
        return PowerLawAnalysis(_gap_series(session, query.filter, query.x))
    metric = metric_of(query.task, query.metric)
    column = task_info(query.task).column_of(query.metric)
    if column is not None:  # a column of the experiments table (classification's accuracies)
        rows = power_law_points(session, query.filter, column)
    else:
        rows = task_metric_points(session, query.filter, query.task, query.metric)
    rows, trials = _search_points(session, list(rows), metric, query.tuned)
    groups = _grouped(session, ((p, None) for p in rows), trials)
    labels = _labels(groups)
    for g in groups:
        if g.searched:
            labels[g.key] += f" · tuned ({', '.join(g.searched)}: the best trial of each study)"
    without_file = _on_bytes(session, groups) if query.x == "bytes" else 0
    series: list[PowerLawSeries] = []
    laws: dict[SeriesKey, MetricLaw] = {}
    for g in groups:
        if not g.points:
            continue  # x=bytes: none of its runs has a model file
        s, law = _series(g, labels[g.key], query, metric)
        series.append(s)
        if law is not None:
            laws[g.key] = law
    series = _focus_first(series)
    focus = series[0] if series else None
    others = [(s.conditions, len(s.points) + len(s.excluded)) for s in series[1:]]
    text = summary_of(
        focus.conditions if focus else None,
        len(focus.points) + len(focus.excluded) if focus else 0,
        others,
    )
    text = _with_files_text(text, without_file)
    out = PowerLawOut(
        metric=query.metric,
        fit_available=True,
        series=series,
        task=query.task,
        label=_label(query.metric, metric.label),
        higher_is_better=metric.higher_is_better,
        fitted=f"1 - {query.metric}" if column is not None else metric.fitted(),
        unit=metric.unit,
        focus=focus.conditions_key if focus else None,
        summary=text,
        x=query.x,
        without_file=without_file,
        budget_table=budget_table(session, groups, focus, query.metric, metric),
    )
    return PowerLawAnalysis(out, laws)


def _on_bytes(session: Session, groups: Sequence[_Group]) -> int:
    """x=bytes: each point at the bytes of its run's model file instead of its backbone
    parameters (the backbone points kept for the budget table); runs without a file leave their
    series. Returns how many were left out."""
    ids = [p.experiment_id for g in groups for p in g.points]
    sizes = model_file_sizes(session, ids)
    for g in groups:
        g.backbone = g.points
        g.points = [
            p.model_copy(update={"params": sizes[p.experiment_id]})
            for p in g.points
            if p.experiment_id in sizes
        ]
    return sum(1 for i in ids if i not in sizes)


def _with_files_text(text: str, without_file: int) -> str:
    if not without_file:
        return text
    verb = "is" if without_file == 1 else "are"
    return (text + " " if text else "") + (
        f"{_runs(without_file)} without a model file {verb} left out of the bytes axis."
    )


def _focus_first(series: list[PowerLawSeries]) -> list[PowerLawSeries]:
    """The fitted series with the most recent run first (the sweep just run), else the
    largest; then the others, largest first."""

    def latest(s: PowerLawSeries) -> int:
        return max((p.experiment_id for p in s.points + s.excluded), default=0)

    def size(s: PowerLawSeries) -> int:
        return len(s.points) + len(s.excluded)

    fitted = [s for s in series if s.fit is not None]
    focus = (
        max(fitted, key=latest)
        if fitted
        else max(series, key=lambda s: (size(s), latest(s)), default=None)
    )
    rest = sorted((s for s in series if s is not focus), key=lambda s: (-size(s), -latest(s)))
    return ([focus] if focus is not None else []) + rest


def _series(
    g: _Group, label: str, query: PowerLawQuery, metric: MetricInfo
) -> tuple[PowerLawSeries, MetricLaw | None]:
    points = [p for p in g.points if query.include_flagged or not p.flags]
    excluded = [p for p in g.points if p.flags and not query.include_flagged]
    out = _series_of(g, label, points, excluded)
    if len({p.params for p in points}) < MIN_POINTS:
        return out, None
    try:
        law = metric_law([p.params for p in points], [p.value for p in points], metric)
        out.fit = _fit(law, query.targets, [float(p.params) for p in points])
    except Exception as err:  # noqa: BLE001 - a failed fit is reported, never a 500
        log.info("power-law fit failed for %s: %s", g.key, err)
        out.fit_error = str(err)[:500]
        return out, None
    return out, law


def _series_of(
    g: _Group,
    label: str,
    points: list[PowerLawPoint],
    excluded: list[PowerLawPoint] | None = None,
    gap: bool = False,
) -> PowerLawSeries:
    """A group as a response series (not fitted yet)."""
    return PowerLawSeries(
        arch=g.first.arch,
        scope=g.first.scope,
        dataset=g.first.dataset,
        sharing=g.first.sharing,
        stacks=g.first.stacks,
        conditions_key=g.conditions_key,
        conditions=g.conditions,
        description=_describe(g),
        method=g.method,
        label=label,
        tuned=bool(g.searched),
        points=points,
        sizes=_sizes(points, gap=gap),
        fit=None,
        excluded=excluded or [],
    )


def _label(metric: str, label: str) -> str:
    return {"best_val_acc": "best val accuracy", "val_acc": "final val accuracy"}.get(metric, label)


def _gap_series(session: Session, f: ListFilter, x: str = "params") -> PowerLawOut:
    """The train-validation gap per run, grouped as the power law (no fit)."""
    groups = _grouped(session, gap_points(session, f))
    labels = _labels(groups)
    without_file = _on_bytes(session, groups) if x == "bytes" else 0
    series = [_series_of(g, labels[g.key], g.points, gap=True) for g in groups if g.points]
    series = _focus_first(series)
    focus = series[0] if series else None
    return PowerLawOut(
        metric="val_acc",
        quantity="gap",
        fit_available=False,
        series=series,
        focus=focus.conditions_key if focus else None,
        summary=_with_files_text(
            summary_of(
                focus.conditions if focus else None,
                len(focus.points) if focus else 0,
                [(s.conditions, len(s.points)) for s in series[1:]],
            ),
            without_file,
        ),
        x=x,
        without_file=without_file,
    )


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


# ----------------------------------------------------------------------------- budget table


def _budget_label(budget: int | float) -> str:
    if isinstance(budget, float):
        return f"{budget:g} of the dense backbone"
    return f"{budget:,} backbone params"


def _apart(a: BudgetCell, b: BudgetCell) -> bool | None:
    """Whether two cells' seed ranges do not overlap (None: a cell with fewer than 2 runs)."""
    if a.n < 2 or b.n < 2 or a.min is None or b.min is None:
        return None
    assert a.max is not None and b.max is not None
    return a.max < b.min or b.max < a.min


def _budget_cell(method: str, runs: Sequence[PowerLawPoint]) -> BudgetCell:
    clean = [p for p in runs if not p.flags]
    values = [p.value for p in clean]
    return BudgetCell(
        method=method,
        n=len(clean),
        mean=statistics.fmean(values) if values else None,
        min=min(values) if values else None,
        max=max(values) if values else None,
        experiment_ids=[p.experiment_id for p in clean],
        flagged_ids=[p.experiment_id for p in runs if p.flags],
    )


def _budget_row(budget: int | float, cells: dict[str, BudgetCell], metric: MetricInfo) -> BudgetRow:
    """A row's best cell(s) in the metric's direction (``MetricInfo.best``; a cell of flagged
    runs only is never the best), each cell's difference to rpg and whether they separate."""
    scored = [c for c in cells.values() if c.mean is not None]
    best: list[str] = []
    if scored:
        top = metric.best(c.mean for c in scored if c.mean is not None)
        for c in scored:
            if c.mean is not None and math.isclose(c.mean, top, rel_tol=1e-12, abs_tol=1e-15):
                c.best = True
                best.append(c.method)
    rpg = cells.get("rpg")
    scale = 100.0 if metric.unit == "" else 1.0  # a fraction's difference in percentage points
    for c in cells.values():
        if c.method == "rpg" or rpg is None or rpg.mean is None or c.mean is None:
            continue
        c.delta_rpg = (c.mean - rpg.mean) * scale
        c.separated = _apart(c, rpg)
    best_separated: bool | None = None
    if len(best) == 1 and len(scored) > 1:
        apart = [_apart(cells[best[0]], c) for c in scored if c.method != best[0]]
        best_separated = None if None in apart else all(apart)
    elif len(best) > 1:
        best_separated = False  # a tie
    return BudgetRow(
        budget=budget,
        label=_budget_label(budget),
        cells=cells,
        best=best,
        best_separated=best_separated,
    )


def _setting_of(g: _Group) -> str:
    """What a method decides beyond the size, as a key: the rings (``rpg``, ``rpg.*``) and
    prune-global's rounds, not whether a spec named the method (a spec's defaults of rounds
    are no setting of another method)."""
    setting = {
        k: v
        for k, v in g.conditions.items()
        if k == "rpg"
        or k.startswith("rpg.")
        or (g.method == "prune-global" and k in ("method.rounds", "method.finetune_epochs"))
    }
    return key_of(setting, ())


def _budgeted(g: _Group) -> bool:
    """Whether a known group's runs may store a ``method.budget``: not without a method section
    (``"method": None``, a condition every run of the key shares), so its 2,500 documents
    are not read for nothing; a run of older conditions (no ``method`` at all) may."""
    return g.conditions.get("method", {}) is not None


def _method_order(methods: Iterable[str]) -> list[str]:
    order = {m: i for i, m in enumerate(METHODS)}
    return sorted(set(methods), key=lambda m: (order.get(m, len(order)), m))


def budget_table(
    session: Session,
    groups: Sequence[_Group],
    focus: PowerLawSeries | None,
    metric_key: str,
    metric: MetricInfo,
) -> BudgetTable | None:
    """The methods side by side (issue 24, Fig. 1 right as a table): one row per budget (a
    run's ``method.budget``, else its backbone parameters), one column per method, each cell
    the mean, min and max of the metric over the runs (seeds) of that method at that budget.

    Pools only runs comparable except for method and budget: the series (one conditions key
    each) whose conditions less the method (``METHOD_KNOBS``: its section and the rings it
    decides) are those of the focus series (else of the most runs). A method with series of
    several ring settings in the pool keeps its largest; the others, and the runs of other
    conditions, are not in the table and said so in ``summary``. Flagged runs are left out of
    the numbers and listed (``flagged_ids``); a cell of flagged runs only is never the best."""
    known = [g for g in groups if g.conditions_key and g.conditions]
    if not known:
        return None

    def pool_of(g: _Group) -> str:
        return key_of(g.conditions, METHOD_KNOBS)

    def runs_of(g: _Group) -> list[PowerLawPoint]:
        return g.backbone if g.backbone is not None else g.points

    pools: dict[str, list[_Group]] = {}
    for g in known:
        pools.setdefault(pool_of(g), []).append(g)
    chosen_group = next(
        (g for g in known if focus and g.conditions_key == focus.conditions_key), None
    )
    chosen = (
        pool_of(chosen_group)
        if chosen_group is not None
        else max(pools, key=lambda k: sum(len(runs_of(g)) for g in pools[k]))
    )
    # a column: one method at one setting of what the method decides (its rings, its rounds):
    # series that differ only in how they asked for it (rpg.ring_size or method.budget) pool
    columns: dict[str, dict[str, list[_Group]]] = {}
    for g in pools[chosen]:
        columns.setdefault(g.method or "rpg", {}).setdefault(_setting_of(g), []).append(g)
    by_method: dict[str, list[_Group]] = {}
    set_apart: list[tuple[Mapping[str, Any], Mapping[str, Any], int]] = []
    for m, settings in columns.items():
        ranked = sorted(
            settings.values(),
            key=lambda gs: (-sum(len(runs_of(g)) for g in gs), -max(g.latest for g in gs)),
        )
        by_method[m] = ranked[0]
        for gs in ranked[1:]:
            n = sum(len(runs_of(g)) for g in gs)
            set_apart.append((ranked[0][0].conditions, gs[0].conditions, n))
    runs = [p for gs in by_method.values() for g in gs for p in runs_of(g)]
    keys = sorted(
        {
            g.conditions_key
            for gs in by_method.values()
            for g in gs
            if g.conditions_key and _budgeted(g)
        }
    )
    stored = condition_of_succeeded(session, keys, "method.budget")
    cells: dict[int | float, dict[str, list[PowerLawPoint]]] = {}
    for m, gs in by_method.items():
        for p in (p for g in gs for p in runs_of(g)):
            b = stored.get(p.experiment_id)
            budget = b if isinstance(b, int | float) and not isinstance(b, bool) else p.params
            cells.setdefault(budget, {}).setdefault(m, []).append(p)
    methods = _method_order(by_method)
    rows = [
        _budget_row(
            b,
            {m: _budget_cell(m, cells[b][m]) for m in methods if m in cells[b]},
            metric,
        )
        for b in sorted(cells, key=lambda b: (isinstance(b, float), b))
    ]
    pooled = comparable(by_method[methods[0]][0].conditions, METHOD_KNOBS)
    flagged = sum(len(c.flagged_ids) for r in rows for c in r.cells.values())
    text = (
        f"{_runs(len(runs))} of {len(methods)} method{'' if len(methods) == 1 else 's'} "
        f"({', '.join(methods)}) at {len(rows)} budget{'' if len(rows) == 1 else 's'}: "
        f"{describe(pooled)}"
    )
    notes = [_clause(by, c, n) + " (another setting of its method)" for by, c, n in set_apart]
    for k, members in pools.items():
        if k != chosen:
            n = sum(len(runs_of(g)) for g in members)
            notes.append(_clause(pooled, comparable(members[0].conditions, METHOD_KNOBS), n))
    unknown = sum(len(runs_of(g)) for g in groups if not (g.conditions_key and g.conditions))
    if unknown:
        notes.append(f"{_runs(unknown)} of unknown conditions")
    if notes:
        text += f"; not in the table: {'; '.join(notes[:4])}"
        if len(notes) > 4:
            text += f" and {len(notes) - 4} more groups"
    if flagged:
        text += (
            f"; {_runs(flagged)} flagged by the guard rails "
            f"{'is' if flagged == 1 else 'are'} left out of the numbers (badged)"
        )
    return BudgetTable(
        metric=metric_key,
        higher_is_better=metric.higher_is_better,
        methods=methods,
        rows=rows,
        conditions_key=chosen,
        description=describe(pooled),
        runs=len(runs),
        summary=text + ".",
    )


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


def _table_groups(runs: Sequence[Any]) -> dict[str | None, list[Any]]:
    """Runs by table key (``rpg_core.spec.conditions.table_key``: every condition but the sharing
    variant, its stacks and its rings); None for runs of unknown conditions."""
    out: dict[str | None, list[Any]] = {}
    for r in runs:
        out.setdefault(table_key(r.conditions) if r.conditions else None, []).append(r)
    return out


def _rings_of(conditions: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (conditions or {}).items() if k == "rpg" or k.startswith("rpg.")}


def _rows(members: Sequence[Any]) -> dict[int, str]:
    """Each run's row: its sharing variant, and where runs of one variant differ in their
    rings (rpg.permute, an explicit ring size), what sets them apart."""
    by_sharing: dict[str | None, dict[str, dict[str, Any]]] = {}
    for r in members:
        rings = _rings_of(r.conditions)
        by_sharing.setdefault(spec_sharing_stacks(r.spec)[0], {})[key_of(rings, ())] = rings
    out = {}
    for r in members:
        sharing = spec_sharing_stacks(r.spec)[0]
        variants = list(by_sharing[sharing].values())
        name = sharing or "—"
        if len(variants) > 1:
            paths = sorted({d for a in variants for b in variants for d in differences(a, b)})
            rings = _rings_of(r.conditions)
            name += (
                " ("
                + ", ".join(f"{field_label(k)} {_value_text(rings.get(k))}" for k in paths[:3])
                + ")"
            )
        out[r.id] = name
    return out


def comparison(
    session: Session, f: ListFilter, task: str | None, conditions: str | None = None
) -> ComparisonOut:
    """The paper's Tables 4 and 5 over succeeded runs of one set of conditions: one row per
    sharing variant, one column per number of sub-networks (stacks); each cell the mean, min,
    max and spread over its runs (seeds) of each of the task's metrics, its parameter counts
    and run count, and the best cell per metric marked (``MetricInfo.best``). A cell pools only
    comparable runs: the runs' conditions less the sharing variant and stacks (the table key)
    are the same; ``conditions`` picks the table by key, else the largest (ties: the most
    recent); the others are listed in ``others``. Flagged runs are left out of a cell's
    numbers (a cell of flagged runs only shows them, badged, and is never the best). Without
    ``task`` the runs' own task is used (a 422 if they mix tasks)."""
    runs = comparison_runs(session, f)
    tasks = sorted({r.task for r in runs})
    if task is None:
        if len(tasks) > 1:
            raise ComparisonError(
                "task", f"these runs mix tasks ({', '.join(tasks)}); choose one with ?task="
            )
        task = tasks[0] if tasks else "classification"
    info = task_info(task)
    groups = _table_groups([r for r in runs if r.task == task])
    if conditions is not None and conditions not in groups:
        raise ComparisonError(
            "conditions",
            f"no runs of conditions {conditions!r} match; use one of "
            f"{', '.join(k for k in groups if k) or '(none)'} or leave conditions out",
        )
    chosen = conditions if conditions is not None else _largest(groups)
    members = groups.get(chosen, []) if groups else []
    cells = _cells(members, info)
    order = {s: i for i, s in enumerate(info.sharing)}
    cells.sort(key=lambda c: (order.get(c.sharing or "", len(order)), c.row, c.stacks or 0))
    best = _mark_best(cells, info.metrics)
    table_conditions = _table_conditions(members)
    others = [
        ComparisonGroup(
            conditions_key=k,
            description=describe(_table_conditions(rs)) if k else "conditions unknown",
            runs=len(rs),
            differs=[field_label(d) for d in differences(table_conditions, _table_conditions(rs))]
            if k and chosen
            else ["conditions (unknown)"],
        )
        for k, rs in groups.items()
        if k != chosen
    ]
    return ComparisonOut(
        task=task,
        metrics=[m.as_dict() for m in info.metrics],
        sharing=list(dict.fromkeys(c.sharing for c in cells)),
        rows=list(dict.fromkeys(c.row for c in cells)),
        stacks=sorted({c.stacks for c in cells if c.stacks is not None}),
        cells=cells,
        best=best,
        runs=len(members),
        conditions_key=chosen,
        conditions=table_conditions,
        description=describe(table_conditions) if members and chosen else "",
        others=others,
        summary=summary_of(
            table_conditions if members else None,
            len(members),
            [(_table_conditions(rs), len(rs)) for k, rs in groups.items() if k != chosen],
            apart="in a table of its own",
        ),
    )


def _largest(groups: Mapping[str | None, Sequence[Any]]) -> str | None:
    if not groups:
        return None
    return max(groups, key=lambda k: (k is not None, len(groups[k]), max(r.id for r in groups[k])))


def _table_conditions(members: Sequence[Any]) -> dict[str, Any]:
    """What every run of a table shares: the conditions less sharing, stacks and rings."""
    c = next((r.conditions for r in members if r.conditions), None)
    return comparable(c, ("model.sharing", "model.stacks", "rpg")) if c else {}


def _cells(members: Sequence[Any], info: Any) -> list[ComparisonCell]:
    rows = _rows(members)
    by_cell: dict[tuple[str, int | None], list[Any]] = {}
    for r in members:
        by_cell.setdefault((rows[r.id], spec_sharing_stacks(r.spec)[1]), []).append(r)
    cells = []
    for (row, stacks), runs in by_cell.items():
        clean = [r for r in runs if not r.flags]
        counted = clean or runs  # a cell of flagged runs only still shows them, badged
        stats: dict[str, MetricStat] = {}
        for m in info.metrics:
            values = [v for r in counted if (v := _run_metric(r, m.key)) is not None]
            if values:
                stats[m.key] = _stat(values)
        total = [int(r.total_params) for r in counted if r.total_params is not None]
        backbone = [int(r.backbone_params) for r in counted if r.backbone_params is not None]
        cells.append(
            ComparisonCell(
                sharing=spec_sharing_stacks(runs[0].spec)[0],
                row=row,
                stacks=stacks,
                n=len(counted),
                experiment_ids=[r.id for r in counted],
                seeds=[r.seed for r in counted],
                flagged_ids=[r.id for r in runs if r.flags],
                flagged=not clean,
                total_params=round(statistics.fmean(total)) if total else None,
                total_params_min=min(total) if total else None,
                total_params_max=max(total) if total else None,
                backbone_params=round(statistics.fmean(backbone)) if backbone else None,
                metrics=stats,
            )
        )
    return cells


def _mark_best(
    cells: Sequence[ComparisonCell], metrics: Sequence[MetricInfo]
) -> dict[str, list[ComparisonPlace]]:
    """Mark the best cell(s) per metric in the metric's direction; a cell of flagged runs
    only is never the best."""
    best: dict[str, list[ComparisonPlace]] = {}
    for m in metrics:
        scored = [c for c in cells if m.key in c.metrics and not c.flagged]
        if not scored:
            continue
        top = m.best(c.metrics[m.key].mean for c in scored)
        for c in scored:
            if math.isclose(c.metrics[m.key].mean, top, rel_tol=1e-12, abs_tol=1e-15):
                c.best.append(m.key)
                best.setdefault(m.key, []).append(
                    ComparisonPlace(sharing=c.sharing, stacks=c.stacks)
                )
    return best


def _run_metric(run: Any, key: str) -> float | None:
    metrics = run.metrics if isinstance(run.metrics, dict) else {}
    value = _finite(metrics.get(key))
    if value is None and run.primary_metric == key:
        value = _finite(run.primary_value)
    if value is None and key == "acc":
        value = _finite(run.val_acc)
    return value
