"""A sweep's ``search`` section: a hyper-parameter search (a study) per grid point (torch-free,
Optuna-free: the service drives Optuna, :mod:`api.search`).

::

    name: lr-search
    base: {model: {arch: resnet18, width: 0.25}, data: {dataset: fashion-mnist}, train: {epochs: 4}}
    grid: {rpg.ring_size: [1000, 4000]}     # optional: one study per grid point (per-size tuning)
    search:
      sampler: tpe              # grid | random | tpe | cmaes | power-law
      n_trials: 16              # trials of each study
      parallel: 2               # how many run at once
      space:
        train.lr: {log: [0.003, 0.3]}
        train.weight_decay: {choices: [0.0, 0.0001, 0.0005]}
        train.batch_size: {int: [32, 128]}
        train.momentum: {uniform: [0.8, 0.95]}
      objective: acc            # default: the task's primary metric (its direction from the task)
      pruner: {name: median, n_startup_trials: 2, n_warmup_steps: 1}
      seed: 0

``sampler: power-law`` searches one size knob (``rpg.ring_size``, ``model.width`` or
``method.budget``) with the adaptive rule of :mod:`rpg_core.analysis.adaptive`; its settings are
the ``law`` section. Errors raise :class:`SearchError`, which names the field
(``search.space.train.lr``, ``search.objective``, ...).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from ..catalog.tasks import DEFAULT_TASK, TASKS
from ..exceptions import RPGConfigError

SAMPLERS = ("grid", "random", "tpe", "cmaes", "power-law")
PRUNERS = ("none", "median", "successive-halving", "hyperband")
RANGE_KINDS = ("log", "uniform", "int", "choices")
POWER_LAW_KNOBS = ("rpg.ring_size", "model.width", "method.budget")
MAX_TRIALS = 200  # trials of one study
MAX_PARALLEL = 64

__all__ = [
    "MAX_TRIALS",
    "POWER_LAW_KNOBS",
    "PRUNERS",
    "RANGE_KINDS",
    "SAMPLERS",
    "LawSettings",
    "PrunerSpec",
    "SearchError",
    "SearchSpec",
    "StudyPlan",
    "check_search",
    "objective_of",
    "plan_studies",
    "set_path",
    "trial_spec",
]


class SearchError(RPGConfigError):
    """A bad ``search`` section; ``field`` is the dotted field it names."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _check_range(value: dict[str, Any]) -> dict[str, Any]:
    """One search dimension: exactly one of ``log``, ``uniform``, ``int`` (``[low, high]``) or
    ``choices`` (a list)."""
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in RANGE_KINDS:
        raise ValueError(
            "give exactly one of {log: [low, high]}, {uniform: [low, high]}, {int: [low, high]} "
            "or {choices: [a, b, ...]}"
        )
    kind, bounds = next(iter(value.items()))
    if kind == "choices":
        if not isinstance(bounds, list) or not bounds:
            raise ValueError("choices: give a non-empty list of values")
        if not all(b is None or isinstance(b, bool | int | float | str) for b in bounds):
            raise ValueError("choices: each value must be a number, a string, a boolean or null")
        if any(isinstance(b, float) and not math.isfinite(b) for b in bounds):
            raise ValueError("choices: numbers must be finite")
        return value
    if not isinstance(bounds, list) or len(bounds) != 2:
        raise ValueError(f"{kind}: give [low, high] (two numbers)")
    if any(isinstance(b, bool) or not isinstance(b, int | float) for b in bounds):
        raise ValueError(f"{kind}: low and high must be numbers, got {bounds}")
    if not all(math.isfinite(b) for b in bounds):
        raise ValueError(f"{kind}: low and high must be finite, got {bounds}")
    low, high = bounds
    if kind == "int" and not all(isinstance(b, int) for b in bounds):
        raise ValueError(f"int: low and high must be integers, got {bounds}")
    if low >= high:
        raise ValueError(f"{kind}: the range [{low}, {high}] is empty or inverted: give low < high")
    if kind == "log" and low <= 0:
        raise ValueError(
            f"log: a log range must lie above zero, got [{low}, {high}]: give low > 0 "
            "(or use uniform for a range through zero)"
        )
    return value


ParamRange = Annotated[dict[str, Any], AfterValidator(_check_range)]


class PrunerSpec(BaseModel):
    """How a study stops unpromising trials early (Optuna's pruners)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["none", "median", "successive-halving", "hyperband"] = "none"
    # median: trials that finish before any is pruned; evaluations before a trial may be pruned
    n_startup_trials: int = Field(2, ge=0, le=1000)
    n_warmup_steps: int = Field(1, ge=0, le=10_000)
    # successive-halving and hyperband: evaluations of the first rung, the cut at each rung
    min_resource: int = Field(1, ge=1, le=10_000)
    reduction_factor: int = Field(3, ge=2, le=100)
    # hyperband: the most evaluations of a trial (default: the spec's epochs)
    max_resource: int | None = Field(None, ge=2, le=10_000)

    @model_validator(mode="after")
    def _resources(self) -> PrunerSpec:
        if self.max_resource is not None and self.max_resource <= self.min_resource:
            raise ValueError(
                f"max_resource ({self.max_resource}) must be above min_resource "
                f"({self.min_resource})"
            )
        return self


def _pruner_shorthand(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


class LawTarget(BaseModel):
    """A target the power-law sampler locates: the size where ``metric`` reaches ``value``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str | None = None  # default: the objective
    value: float = Field(..., allow_inf_nan=False)


class LawSettings(BaseModel):
    """``sampler: power-law``: the adaptive rule's settings (``docs/ADAPTIVE.md``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    initial: int = Field(3, ge=2, le=20)  # sizes spread over the range first
    b_width: float | None = Field(None, gt=0, allow_inf_nan=False)  # stop: b's 95% interval
    target: LawTarget | None = None
    target_width: float | None = Field(None, gt=0, allow_inf_nan=False)  # stop: log10 params


class SearchSpec(BaseModel):
    """A sweep's ``search``: one Optuna study per grid point."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sampler: Literal["grid", "random", "tpe", "cmaes", "power-law"] = "tpe"
    n_trials: int = Field(16, ge=1, le=MAX_TRIALS, description="trials of each study")
    parallel: int = Field(1, ge=1, le=MAX_PARALLEL, description="trials running at once")
    space: dict[str, ParamRange] = Field(
        ..., min_length=1, description="dotted spec path -> {log|uniform|int: [lo, hi]} or choices"
    )
    objective: str | None = Field(None, description="a metric of the task (default: primary)")
    pruner: Annotated[PrunerSpec, BeforeValidator(_pruner_shorthand)] = PrunerSpec()
    seed: int = Field(0, ge=0, le=2**31 - 1)
    law: LawSettings = LawSettings()


def objective_of(search: SearchSpec, task: str | None) -> tuple[str, bool]:
    """The study's objective metric key and whether higher is better (from the task)."""
    info = TASKS[task or DEFAULT_TASK]
    key = search.objective or info.primary[0]
    return key, info.metric(key).higher_is_better


def set_path(d: dict[str, Any], path: str, value: Any, field: str = "") -> None:
    """Set ``d[a][b] = value`` for ``path`` ``a.b`` (sections created on the way); an error
    starts with ``field`` (the section that named the path: ``grid``)."""
    keys = path.split(".")
    cur = d
    for k in keys[:-1]:
        nxt = cur.get(k)
        if nxt is None:
            nxt = cur[k] = {}
        if not isinstance(nxt, dict):
            where = f"{field}: " if field else ""
            raise RPGConfigError(f"{where}{path!r} goes through {k!r}, which is not a section")
        cur = nxt
    cur[keys[-1]] = value


def _probe_values(dim: dict[str, Any]) -> list[Any]:
    kind, bounds = next(iter(dim.items()))
    return list(bounds) if kind != "choices" else list(bounds)


def check_search(search: SearchSpec, base: dict[str, Any], grid_paths: list[str]) -> None:
    """What the section's own types cannot see: the objective against the task, the sampler
    against the pruner and the space, and every searched value against the spec (a trial with
    it must be a valid experiment). Raises :class:`SearchError` naming the field."""
    from . import parse_spec

    task = base.get("task") or DEFAULT_TASK
    info = TASKS.get(task) if isinstance(task, str) else None
    if info is None:
        raise SearchError("base.task", f"unknown task {task!r}")
    if search.objective is not None and search.objective not in {m.key for m in info.metrics}:
        keys = ", ".join(m.key for m in info.metrics)
        raise SearchError(
            "search.objective",
            f"the task {task} has no metric {search.objective!r}; give one of: {keys}",
        )
    if search.sampler == "grid" and search.pruner.name != "none":
        raise SearchError(
            "search.pruner",
            "a pruner cannot be combined with sampler: grid (Optuna's grid sampler visits each "
            "point once, a pruned point is never tried again): use pruner: none, or sampler: "
            "random / tpe",
        )
    if search.sampler == "grid":
        for path, dim in search.space.items():
            if "choices" not in dim:
                raise SearchError(
                    f"search.space.{path}",
                    "sampler: grid searches listed values: give {choices: [...]}",
                )
        points = math.prod(len(d["choices"]) for d in search.space.values())
        if search.n_trials > points:
            raise SearchError(
                "search.n_trials",
                f"the grid has {points} points: give n_trials <= {points} (each point once)",
            )
    if search.sampler == "cmaes":
        for path, dim in search.space.items():
            if "choices" in dim:
                raise SearchError(
                    f"search.space.{path}",
                    "sampler: cmaes searches numbers: give {log|uniform|int: [low, high]}",
                )
    if search.sampler == "power-law":
        if len(search.space) != 1 or next(iter(search.space)) not in POWER_LAW_KNOBS:
            raise SearchError(
                "search.space",
                "sampler: power-law searches one size knob: give one of "
                + ", ".join(POWER_LAW_KNOBS)
                + " with {log|int|uniform: [low, high]}",
            )
        path, dim = next(iter(search.space.items()))
        if "choices" in dim:
            raise SearchError(f"search.space.{path}", "power-law needs a range, not choices")
        if search.pruner.name != "none":
            raise SearchError(
                "search.pruner", "sampler: power-law trains each size to the end: use pruner: none"
            )
        if search.law.target is not None:
            metric = search.law.target.metric or objective_of(search, task)[0]
            if metric not in {m.key for m in info.metrics}:
                raise SearchError(
                    "search.law.target.metric", f"the task {task} has no metric {metric!r}"
                )
    for path in search.space:
        if path in grid_paths:
            raise SearchError(
                f"search.space.{path}", "this path is a grid key too: search it or grid it"
            )
        for value in _probe_values(search.space[path]):
            d = copy.deepcopy(base)
            d.setdefault("name", "probe")
            try:
                set_path(d, path, value)
                parse_spec(d)
            except RPGConfigError as err:
                raise SearchError(
                    f"search.space.{path}", f"a trial with {path} = {value!r} is invalid: {err}"
                ) from None


@dataclass(frozen=True)
class StudyPlan:
    """One study of a search sweep: its name and the spec its trials start from."""

    name: str
    base: dict[str, Any]  # a validated ExperimentSpec dump (the grid point)


def plan_studies(base_specs: list[dict[str, Any]]) -> list[StudyPlan]:
    """One study per expanded grid point (a sweep without a grid: one study)."""
    return [StudyPlan(name=str(s["name"]), base=s) for s in base_specs]


def trial_spec(base: dict[str, Any], params: dict[str, Any], number: int) -> dict[str, Any]:
    """The experiment of trial ``number``: the study's base spec with ``params`` set (validated;
    its name ``<study>-t<number>``)."""
    from . import parse_spec

    d = copy.deepcopy(base)
    for path, value in params.items():
        set_path(d, path, value)
    d["name"] = f"{base['name']}-t{number}"[:128]
    return parse_spec(d).model_dump(mode="json")
