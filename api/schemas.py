"""Response bodies of the REST API (request bodies are rpg_core's ExperimentSpec/SweepSpec)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rpg_core.training.result import ExperimentResult

from .status import JobStatus


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Created(Out):
    id: int = Field(examples=[42])
    status: JobStatus = Field(examples=["queued"])
    dispatched: bool = Field(description="False: the broker was unreachable; the run stays queued")


class ExperimentSummary(Out):
    id: int
    name: str
    status: JobStatus
    arch: str
    dataset: str
    scope: str
    ring_size: float | None
    sweep_id: int | None
    tags: list[str]
    progress: float
    epoch: int | None
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    val_acc: float | None
    best_val_acc: float | None
    backbone_params: int | None
    flags: list[str] = Field(
        default_factory=list,
        description="guard-rail flags of the finished run (diverged, near-chance); a flagged "
        "run is left out of power-law fits unless include_flagged is set",
    )

    @field_validator("flags", mode="before")
    @classmethod
    def _split_flags(cls, v: Any) -> Any:
        if v is None:
            return []
        return [c for c in v.split(",") if c] if isinstance(v, str) else v


class ExperimentDetail(ExperimentSummary):
    spec: dict[str, Any]
    worker: str | None
    heartbeat_at: datetime | None
    cancel_requested: bool
    error: str | None
    updated_at: datetime
    train_acc: float | None
    total_params: int | None
    train_time_s: float | None
    result: ExperimentResult | None = Field(
        None,
        description="the stored result (rpg_core.training.result.ExperimentResult); fields added since a "
        "run finished take their defaults",
    )
    has_model: bool = False


class ExperimentPage(BaseModel):
    items: list[ExperimentSummary]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null: the end")


class StatusOut(BaseModel):
    id: int
    status: JobStatus


class SweepCreated(BaseModel):
    id: int
    name: str
    experiment_ids: list[int]
    dispatched: int
    study_ids: list[int] = Field(
        default_factory=list,
        description="a search sweep's studies (GET /api/studies/{id}); its first trials are "
        "experiment_ids, the next ones follow as trials finish",
    )


class SweepOut(BaseModel):
    id: int
    name: str
    created_at: datetime
    total: int
    counts: dict[str, int] = Field(examples=[{"queued": 3, "running": 1, "succeeded": 8}])
    spec: dict[str, Any] | None = None
    task: str = Field("classification", description="the task of the sweep's base spec")
    varies: list[str] = Field(
        default_factory=list, description="the spec fields its runs differ in (dotted paths)"
    )
    compares_variants: bool = Field(
        False,
        description="whether the sweep varies model.sharing or model.stacks: only then has it "
        "a comparison table (GET /api/analysis/comparison)",
    )
    study_ids: list[int] = Field(default_factory=list, description="a search sweep's studies")


class SweepPage(BaseModel):
    items: list[SweepOut]
    next_cursor: str | None


class Series(BaseModel):
    epoch: list[int]
    value: list[float]


class MetricsOut(BaseModel):
    experiment_id: int
    series: dict[str, Series]


class PowerLawPoint(BaseModel):
    experiment_id: int
    params: int
    value: float = Field(description="the metric's value (accuracy, PCKh, depth RMSE, ...)")
    flags: list[str] = Field(default_factory=list, description="guard-rail flags of the run")
    gap: float | None = Field(
        None,
        description="quantity=gap: train accuracy minus final validation accuracy (value is "
        "then the final validation accuracy)",
    )
    trial: int | None = Field(
        None, description="a search trial's number in its study (the order it was asked)"
    )


class PowerLawSize(BaseModel):
    """The replicates (seeds) of one size in a series: their mean and spread (the fit uses
    every replicate)."""

    params: int
    n: int
    mean: float
    min: float
    max: float
    std: float = Field(description="population standard deviation over the replicates")
    experiment_ids: list[int]


class PowerLawFit(BaseModel):
    a: float
    b: float
    r2: float
    b_ci: list[float] | None
    params_for: dict[str, float | None] = Field(
        default_factory=dict, description="backbone params predicted for each ?target= accuracy"
    )
    params_for_text: dict[str, str | None] = Field(
        default_factory=dict,
        description="the same in words, saying when the fit extrapolates; beyond 100x the "
        "largest run: out of reach, without its digits",
    )


class PowerLawSeries(BaseModel):
    arch: str
    scope: str
    dataset: str
    sharing: str | None = Field(
        None, description="model.sharing of a stacked model (pose, multitask)"
    )
    stacks: int | None = Field(None, description="model.stacks (sub-networks) of a stacked model")
    conditions_key: str | None = Field(
        None,
        description="the key of the series' conditions (rpg_core.spec.conditions): a series pools "
        "only runs of equal keys; null: runs of unknown conditions (specs older than the key)",
    )
    conditions: dict[str, Any] = Field(
        default_factory=dict,
        description="what every run of the series shares: its resolved spec less the size "
        "knobs (ring size, width), the seeds and the labels",
    )
    description: str = Field("", description="the conditions in a sentence")
    tuned: bool = Field(
        False,
        description="the best trial of each search study (per size and seed): what tuning "
        "reached, next to the untuned series (?tuned=false leaves search trials out)",
    )
    method: str | None = Field(
        None,
        description="the method the series' runs shrink the network by (rpg, width, hashed, "
        "prune-global: rpg_core.spec.conditions.method_of); null: unknown conditions",
    )
    label: str = Field(
        "",
        description="the series' name: arch, scope, dataset and what sets it "
        "apart from other series of the same ones",
    )
    points: list[PowerLawPoint] = Field(description="the runs the fit is made over")
    sizes: list[PowerLawSize] = Field(
        default_factory=list, description="the points by size: mean and spread over replicates"
    )
    fit: PowerLawFit | None
    fit_error: str | None = None
    excluded: list[PowerLawPoint] = Field(
        default_factory=list,
        description="flagged runs (diverged, near chance) left out of the fit; "
        "include_flagged=true fits them too",
    )


class PowerLawOut(BaseModel):
    metric: str
    quantity: str = Field(
        "accuracy", description="accuracy (fitted) or gap (train - val, not fitted)"
    )
    fit_available: bool
    series: list[PowerLawSeries] = Field(
        description="one per conditions (never one fit over mixed conditions), the focus first"
    )
    task: str = Field("classification", description="the task whose runs are fitted")
    label: str = Field("", description="the metric's label (axis title)")
    higher_is_better: bool = True
    fitted: str = Field(
        "",
        description="the quantity fitted as a * P^(-b): 1 - metric for a higher-is-better metric "
        "(accuracy, PCKh), the metric itself for a lower-is-better one (an RMSE)",
    )
    unit: str = ""
    focus: str | None = Field(
        None,
        description="the conditions key of the series the figure opens on: the fitted series "
        "with the most recent run (else the largest)",
    )
    summary: str = Field(
        "", description="in words: what the focus series pooled and what was left apart"
    )
    x: str = Field(
        "params",
        description="the x axis: params (backbone parameters) or bytes (the model file's "
        "bytes); every point's, size's and fit's params count in this unit",
    )
    without_file: int = Field(
        0, description="x=bytes: succeeded runs left out because they have no model file"
    )
    budget_table: BudgetTable | None = Field(
        None,
        description="the methods side by side at each budget (issue 24): one row per budget, "
        "one column per method, over the runs comparable except for method and budget",
    )


class BudgetCell(BaseModel):
    """The runs (seeds) of one method at one budget."""

    method: str
    n: int = Field(description="unflagged runs in the cell's numbers")
    mean: float | None = Field(description="the metric's mean over the runs (null: none)")
    min: float | None
    max: float | None
    experiment_ids: list[int]
    flagged_ids: list[int] = Field(
        default_factory=list, description="runs the guard rails flagged: left out, badged"
    )
    best: bool = Field(False, description="the best cell of its row, in the metric's direction")
    delta_rpg: float | None = Field(
        None,
        description="mean minus rpg's mean at this budget, in points (percentage points for a "
        "fraction metric, the metric's unit otherwise); null for rpg or without rpg",
    )
    separated: bool | None = Field(
        None,
        description="the seed ranges (min-max) of this cell and rpg's do not overlap; null "
        "for rpg, without an rpg cell, or with fewer than 2 runs on either side",
    )


class BudgetRow(BaseModel):
    budget: int | float = Field(
        description="method.budget of the runs (backbone parameters, or a fraction of the "
        "dense network's), else their backbone parameters"
    )
    label: str
    cells: dict[str, BudgetCell] = Field(description="by method")
    best: list[str] = Field(default_factory=list, description="the best method(s) of the row")
    best_separated: bool | None = Field(
        None,
        description="the best cell's seed range overlaps no other cell's of the row (null: a "
        "cell with fewer than 2 runs, or one method only)",
    )


class BudgetTable(BaseModel):
    metric: str
    higher_is_better: bool
    methods: list[str] = Field(description="the columns, rpg first, then the registry's order")
    rows: list[BudgetRow] = Field(description="ascending budget")
    conditions_key: str | None = Field(
        None, description="the key of what the table's runs share (conditions less method, size)"
    )
    description: str = ""
    runs: int = 0
    summary: str = Field("", description="in words: what the table pooled and what it left out")


class MetricStat(BaseModel):
    mean: float
    min: float
    max: float
    std: float = Field(description="population standard deviation over the cell's runs")
    n: int


class ComparisonPlace(BaseModel):
    sharing: str | None
    stacks: int | None


class ComparisonCell(BaseModel):
    sharing: str | None = Field(description="model.sharing")
    row: str = Field(
        "",
        description="the table's row: the sharing variant, with what sets it apart where one "
        "variant was run under two ring settings",
    )
    stacks: int | None = Field(description="model.stacks, the number of sub-networks (column)")
    n: int = Field(description="succeeded runs (seeds) in the cell's numbers")
    experiment_ids: list[int]
    seeds: list[int | None]
    flagged_ids: list[int] = Field(
        default_factory=list,
        description="runs the guard rails flagged (diverged, near chance): left out of the "
        "cell's numbers unless every run of the cell is flagged",
    )
    flagged: bool = Field(
        False, description="the cell's numbers come from flagged runs only: never the best"
    )
    total_params: int | None = Field(description="mean total parameter count of its runs")
    total_params_min: int | None = None
    total_params_max: int | None = None
    backbone_params: int | None = Field(
        None, description="mean backbone parameter count of its runs (the power law's count)"
    )
    metrics: dict[str, MetricStat] = Field(description="per metric key: mean and spread")
    best: list[str] = Field(
        default_factory=list, description="the metric keys for which this cell is the best"
    )


class ComparisonGroup(BaseModel):
    """Runs left out of a table because their conditions differ."""

    conditions_key: str | None
    description: str
    runs: int
    differs: list[str] = Field(description="the conditions in which they differ, in words")


class ComparisonOut(BaseModel):
    task: str
    metrics: list[dict[str, Any]] = Field(description="the task's metrics (key, label, direction)")
    sharing: list[str | None] = Field(description="the sharing variants, in the task's order")
    rows: list[str] = Field(default_factory=list, description="the rows, in the task's order")
    stacks: list[int] = Field(description="the columns, ascending")
    cells: list[ComparisonCell]
    best: dict[str, list[ComparisonPlace]] = Field(
        default_factory=dict, description="per metric key: the best cell(s), direction-aware"
    )
    runs: int
    conditions_key: str | None = Field(
        None,
        description="the table's conditions key (?conditions= picks another group): its runs "
        "share every condition but the sharing variant and the stacks",
    )
    conditions: dict[str, Any] = Field(default_factory=dict)
    description: str = Field("", description="the table's conditions in a sentence")
    others: list[ComparisonGroup] = Field(
        default_factory=list, description="runs of other conditions, each its own table"
    )
    summary: str = Field("", description="in words: what the table pooled and what it left apart")


class TaskOut(BaseModel):
    name: str
    description: str
    datasets: str
    archs: list[str] | None
    sharing: list[str]
    default_sharing: str | None
    metrics: list[dict[str, Any]]
    primary: list[str]


class MethodOut(BaseModel):
    name: str
    description: str
    reference: str
    budget: str  # how method.budget is read
    min_budget: int
    trains_dense_first: bool


class HealthOut(BaseModel):
    status: str
    database: dict[str, Any]
    broker: dict[str, Any]


class OODPoint(BaseModel):
    experiment_id: int
    name: str
    arch: str
    scope: str = Field(description="plain for a plain network; else the RPG scope")
    dataset: str
    backbone_params: int | None
    val_acc: float | None = Field(description="final in-distribution validation accuracy")
    train_acc: float | None
    ood_acc: float | None = Field(description="mean accuracy over the OOD sets (severity 0 out)")
    ood: dict[str, float] = Field(
        description="accuracy per OOD set: <shift>@<severity> or folder:<name>",
        examples=[{"rotation@1": 0.81, "rotation@3": 0.42, "folder:objectnet-mini": 0.3}],
    )


class OODOut(BaseModel):
    points: list[OODPoint]


PowerLawOut.model_rebuild()


class StudyOut(BaseModel):
    """A search study (one per grid point of a search sweep)."""

    id: int
    sweep_id: int | None
    name: str
    state: str = Field(description="running | finished")
    sampler: str
    pruner: str
    n_trials: int
    parallel: int
    objective: str
    direction: str = Field(description="maximize | minimize (the objective's, from the task)")
    counts: dict[str, int] = Field(description="its trials' experiments by status")
    stop_reason: str | None = None
    created_at: datetime
    finished_at: datetime | None = None


class TrialOut(BaseModel):
    number: int
    experiment_id: int
    status: str = Field(description="the experiment's status (pruned: the pruner stopped it)")
    state: str | None = Field(description="Optuna's: running, complete, pruned, fail")
    params: dict[str, Any]
    value: float | None = Field(description="the objective of a complete trial")
    intermediate: dict[str, float] = Field(description="evaluation (epoch) -> objective")
    best_so_far: float | None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    reason: str | None = Field(None, description="power-law: why this size")
    b_interval: list[float | None] | None = Field(
        None, description="power-law: b's 95% interval when this size was chosen"
    )
    target_interval: list[float | None] | None = Field(
        None, description="power-law: the 95% interval of log10(params reaching the target)"
    )
    phase: str | None = Field(None, description="power-law: initial, adaptive or stop")


class StudyDetail(StudyOut):
    trials: list[TrialOut]
    best: dict[str, Any] | None = Field(description="{number, value} of the best trial so far")
    importance: dict[str, float] | None = Field(
        description="Optuna's parameter importance (fANOVA), from 2 complete trials on"
    )
    higher_is_better: bool
