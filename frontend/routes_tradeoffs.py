"""The dashboard's JSON for its trade-off figures: in- against out-of-distribution accuracy
(eval.ood), a run's accuracy per shift, and a sweep's accuracy against inference time per image
(model.recurrence, paper Table 1). Reads through the API's services (api.analysis, api.crud)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from api import analysis, crud
from api.deps import AnalysisFilterDep, ExperimentId, ReadAuth, SessionDep, SweepId
from api.models import Experiment
from api.status import JobStatus
from rpg_core.catalog.tasks import task_info
from rpg_core.spec.model import sharing_and_stacks

from . import figures_tradeoffs as tradeoffs

router = APIRouter(include_in_schema=False)


# ----------------------------------------------------------------------------- generalization


@router.get("/ui/figures/ood")
def ood_figure(session: SessionDep, _auth: ReadAuth, f: AnalysisFilterDep) -> Any:
    """The API's OOD points (the same service and query) as the ID-vs-OOD scatter and a table
    (one row per run)."""
    data = analysis.ood(session, f).model_dump()
    points = data["points"]
    rows = [
        {
            k: p[k]
            for k in (
                "experiment_id",
                "name",
                "arch",
                "scope",
                "dataset",
                "backbone_params",
                "val_acc",
                "train_acc",
                "ood_acc",
            )
        }  # fmt: skip
        for p in points
    ]
    return {"figure": tradeoffs.ood_scatter_figure(points), "rows": rows, "points": len(points)}


@router.get("/ui/figures/runs/{experiment_id}/ood")
def run_ood_figure(experiment_id: ExperimentId, session: SessionDep, _auth: ReadAuth) -> Any:
    """One run's accuracy per OOD set and severity (empty when it had no eval.ood)."""
    exp = crud.get_experiment(session, experiment_id)
    if exp is None:
        raise HTTPException(404, detail=f"experiment {experiment_id} not found")
    result = crud.get_result(session, experiment_id) or {}
    ood = analysis.ood_values(result.get("ood"))
    if not ood:
        return {"sets": 0}
    shifts, folders = tradeoffs.split_ood(ood)
    return {
        "sets": len(shifts) + len(folders),
        "ood_acc": result.get("ood_acc"),
        "val_acc": exp.val_acc,
        "shifts": {k: {str(s): a for s, a in v.items()} for k, v in sorted(shifts.items())},
        "folders": folders,
        "figure": tradeoffs.ood_breakdown_figure(ood, exp.val_acc),
    }


# ----------------------------------------------------------------------------- speed


def speed_group(spec: dict[str, Any]) -> str:
    """A run's series on the speed figure: its recurrence mode, else rpg (a ring) or plain."""
    model = spec.get("model") or {}
    sharing, stacks = sharing_and_stacks(model)
    if sharing is not None:  # stacked (pose, multitask): sharing x stacks
        return f"{sharing} x{stacks}"
    rec = model.get("recurrence")
    if isinstance(rec, dict) and rec.get("mode"):
        if rec["mode"] == "shared" and rec.get("norms") == "per_application":
            return "shared, own norms"
        return str(rec["mode"])
    return "rpg" if spec.get("rpg") else "plain"


def speed_points(rows: list[Experiment], results: dict[int, Any]) -> list[tradeoffs.SpeedPoint]:
    """Succeeded runs whose result has an inference time (runs before it was stored: none)."""
    out = []
    for exp in rows:
        result = results.get(exp.id) or {}
        ms = result.get("inference_ms_per_image")
        # a task's first metric column (classification: the best val accuracy), else its
        # primary metric
        columns = task_info(exp.task).metric_columns
        value = getattr(exp, columns[0]) if columns else exp.primary_value
        if exp.status != JobStatus.succeeded or value is None or not isinstance(ms, int | float):
            continue
        group = speed_group(exp.spec or {})
        out.append(tradeoffs.SpeedPoint(exp.id, exp.name, group, ms, value, exp.backbone_params))
    return out


@router.get("/ui/figures/sweeps/{sweep_id}/speed")
def speed_figure(sweep_id: SweepId, session: SessionDep, _auth: ReadAuth) -> Any:
    """Accuracy against inference time per image for a sweep's runs (paper Table 1)."""
    sweep = crud.get_sweep(session, sweep_id)
    if sweep is None:
        raise HTTPException(404, detail=f"sweep {sweep_id} not found")
    rows, _ = crud.list_experiments(session, crud.ListFilter(sweep_id=sweep_id), limit=1000)
    results = crud.results_of(session, [exp.id for exp in rows])
    points = speed_points(rows, results)
    if not points:
        return {"figure": None, "reason": "no finished run with an inference time yet"}
    task = task_info(sweep_task(rows))
    metric = task.primary_metric
    label = (
        "best val accuracy"
        if task.metric_columns
        else (f"{metric.label} ({metric.direction} is better)")
    )
    name = label.split(" (")[0]
    title = f"{name[:1].upper()}{name[1:]} against inference time: {sweep.name}"
    return {"figure": tradeoffs.speed_figure(points, title, label), "points": len(points)}


def sweep_task(rows: list[Experiment]) -> str:
    """The task of a sweep's runs (a sweep has one: its base spec's)."""
    return rows[0].task if rows else "classification"
