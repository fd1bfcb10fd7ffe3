"""The dashboard's routes: HTML pages, static assets, plotly.js, and the JSON the pages need
on top of the REST API (figures built server-side, the runs table's extra columns)."""

from __future__ import annotations

import dataclasses
import html
import json
import logging
import re
import statistics
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import plotly
from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from sqlalchemy.orm import Session

from api import analysis, crud
from api.deps import (
    ExperimentId,
    ListQueryDep,
    PowerLawQuery,
    PowerLawQueryDep,
    ReadAuth,
    SessionDep,
    SettingsDep,
    SweepId,
)
from api.models import Experiment
from api.routes.studies import StudyId
from api.status import STATUSES, JobStatus, page_data
from api.storage import StoreUnavailable, local_copy, open_store
from rpg_core.catalog.tasks import TASKS

from . import figures

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
PLOTLY_JS = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
PLOTLY_URL = f"/assets/plotly-{plotly.__version__}.min.js"
MAX_COMPARE = 12
ERROR_PREVIEW = 2000
PAGES = {
    "runs": ("Runs", "runs.html"),
    "run": ("Run", "run.html"),
    "power-law": ("Power law", "power_law.html"),
    "similarity": ("Similarity", "similarity.html"),
    "sweeps": ("Sweeps", "sweeps.html"),
    "generalization": ("Generalization", "generalization.html"),
    "tables": ("Tables", "tables.html"),
    "study": ("Study", "study.html"),
}
NAV = (("runs", "/", "Runs"), ("power-law", "/power-law", "Power law"),
       ("similarity", "/similarity", "Similarity"), ("sweeps", "/sweeps", "Sweeps"),
       ("generalization", "/generalization", "Generalization"),
       ("tables", "/tables", "Tables"), ("docs", "/docs", "API docs"))  # fmt: skip


# ----------------------------------------------------------------------------- pages


@lru_cache(maxsize=16)
def _template(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


def _nav(page: str) -> str:
    items = []
    for key, href, label in NAV:
        current = ' aria-current="page"' if key == page or (page == "run" and key == "runs") else ""
        items.append(f'<li><a href="{href}"{current}>{label}</a></li>')
    return "\n".join(items)


def _arch_options(select_default: bool = False) -> str:
    """The classifiers (a pose or multitask run names its task: the spec and sweep tabs take
    those). ``select_default``: the simple form's, with the spec's default (resnet18, the
    README's) selected; a filter's select none (its first option, "any", stays chosen)."""
    from rpg_core.catalog.tasks import DEFAULT_TASK, task_of_arch
    from rpg_core.models import list_models
    from rpg_core.spec import ModelSpec

    default = ModelSpec.model_fields["arch"].default
    return "".join(f'<option value="{html.escape(m)}"{" selected" if select_default and m == default else ""}>'
                   f'{html.escape(m)}</option>'
                   for m in list_models() if task_of_arch(m) == DEFAULT_TASK)  # fmt: skip


def _status_options() -> str:
    """The runs filter's statuses (``api.status`` owns them)."""
    return "".join(f"<option>{html.escape(s)}</option>" for s in STATUSES)


def _page_json(data: object) -> str:
    """``data`` as JSON for a ``<script type="application/json">`` (no ``</script>`` inside)."""
    return json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")


def render(page: str, **data: str) -> HTMLResponse:
    """The page ``page`` inside the layout; ``data`` becomes data-* attributes of <main>; the
    job statuses (``api.status.page_data``) travel in ``#job-statuses`` for ``common.js``."""
    title, body_file = PAGES[page]
    body = (
        _template(body_file)
        .replace("{{arch_form_options}}", _arch_options(select_default=True))
        .replace("{{arch_options}}", _arch_options())
        .replace("{{status_options}}", _status_options())
    )
    attrs = " ".join(f'data-{k}="{html.escape(v)}"' for k, v in data.items())
    text = (
        _template("layout.html")
        .replace("{{body}}", body)
        .replace("{{title}}", title)
        .replace("{{nav}}", _nav(page))
        .replace("{{page}}", page)
        .replace("{{data}}", attrs)
        .replace("{{plotly}}", PLOTLY_URL)
        .replace("{{job_statuses}}", _page_json(page_data()))
    )
    return HTMLResponse(text, headers={"Cache-Control": "no-cache"})


@router.get("/", response_class=HTMLResponse)
def runs_page() -> HTMLResponse:
    return render("runs")


@router.get("/runs/{experiment_id}", response_class=HTMLResponse)
def run_page(experiment_id: ExperimentId) -> HTMLResponse:
    return render("run", **{"run-id": str(experiment_id)})


@router.get("/power-law", response_class=HTMLResponse)
def power_law_page() -> HTMLResponse:
    return render("power-law")


@router.get("/similarity", response_class=HTMLResponse)
def similarity_page() -> HTMLResponse:
    return render("similarity")


@router.get("/sweeps", response_class=HTMLResponse)
def sweeps_page() -> HTMLResponse:
    return render("sweeps")


@router.get("/ui/studies/{study_id}", response_class=HTMLResponse)
def study_page(study_id: StudyId) -> HTMLResponse:
    """A search study's page (issue 25): its trials over time, the best so far, importance."""
    return render("study", **{"study-id": str(study_id)})


@router.get("/ui/figures/studies/{study_id}")
def study_figure(
    study_id: StudyId, session: SessionDep, settings: SettingsDep, _auth: ReadAuth
) -> Any:
    from api import search
    from api.models import Study

    from .figures_studies import study_figure as figure

    row = session.get(Study, study_id)
    if row is None:
        raise HTTPException(404, detail=f"study {study_id} not found")
    return {"figure": figure(search.study_detail(session, settings, row))}


@router.get("/generalization", response_class=HTMLResponse)
def generalization_page() -> HTMLResponse:
    return render("generalization")


@router.get(PLOTLY_URL)
def plotly_js() -> FileResponse:
    """plotly.js from the installed plotly package (no CDN); versioned URL, cached for a year."""
    return FileResponse(
        PLOTLY_JS,
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=31536000, immutable"},
    )


# ----------------------------------------------------------------------------- runs table


def _duration(exp: Experiment) -> float | None:
    if exp.started_at is None:
        return exp.train_time_s
    end = exp.finished_at or datetime.now(UTC)
    return max((end - exp.started_at).total_seconds(), 0.0)


def _row(exp: Experiment, has_model: bool) -> dict[str, Any]:
    gap = None
    if exp.train_acc is not None and exp.best_val_acc is not None:
        gap = exp.train_acc - exp.best_val_acc
    return {
        "id": exp.id, "name": exp.name, "status": exp.status, "progress": exp.progress,
        "epoch": exp.epoch, "arch": exp.arch, "scope": exp.scope, "dataset": exp.dataset,
        "ring_size": exp.ring_size, "backbone_params": exp.backbone_params,
        "total_params": exp.total_params, "best_val_acc": exp.best_val_acc,
        "val_acc": exp.val_acc, "train_acc": exp.train_acc, "gap": gap, "task": exp.task,
        "primary_metric": exp.primary_metric, "primary_value": exp.primary_value,
        "duration_s": _duration(exp), "worker": exp.worker, "attempts": exp.attempts,
        "sweep_id": exp.sweep_id, "has_model": has_model,
        "flags": [c for c in (exp.flags or "").split(",") if c],
        "error": exp.error[:ERROR_PREVIEW] if exp.error else None,
    }  # fmt: skip


@router.get("/ui/api/runs")
def runs_json(session: SessionDep, _auth: ReadAuth, q: ListQueryDep) -> dict[str, Any]:
    """The API's listing (same filters, sort and cursor) with the table's extra columns:
    train-val gap, duration, worker, error, has_model; the first page also has the counts."""
    rows, next_cursor = crud.list_experiments(
        session,
        q.filter,
        sort=q.sort,
        limit=q.limit,
        cursor=q.cursor,
        key=q.cursor_key,
        summary=True,
    )
    models = crud.ids_with_file(session, [r.id for r in rows], "model")
    out: dict[str, Any] = {
        "items": [_row(r, r.id in models) for r in rows],
        "next_cursor": next_cursor,
    }
    if not q.cursor:
        out["counts"] = crud.count_by_status(session)
    return out


# ----------------------------------------------------------------------------- run details


@lru_cache(maxsize=256)
def _inspect(path: str, sha256: str) -> dict[str, Any]:
    from rpg_core.format import inspect_compact

    info = inspect_compact(path)
    return {
        "available": True,
        "params": info["params"],
        "bytes": info["bytes"],
        "file_bytes": info["bytes"]["total"],
        "full_bytes": info["full_float32_state_dict_bytes"],
        "ratio": info["ratio_vs_full_state_dict"],
        "rings": info["rings"],
        "sha256": sha256,
    }


@router.get("/ui/api/runs/{experiment_id}/model-info")
def model_info(
    experiment_id: ExperimentId, session: SessionDep, settings: SettingsDep, _auth: ReadAuth
) -> dict[str, Any]:
    """Parameters by part and the .rpg size against the full float32 state dict, read from
    the stored .rpg header (a file this service wrote; nothing is unpickled). A run without
    a model yet answers ``available: false`` (200, so the page logs no failed request)."""
    record = crud.get_file(session, experiment_id, "model")
    try:  # the stored file itself, or (a remote store) a copy cached here
        cache = Path(settings.artifact_dir) / "cache"
        path = (
            local_copy(open_store(settings), record.path, cache, record.sha256) if record else None
        )
    except StoreUnavailable as err:
        raise HTTPException(503, detail=str(err)) from None
    if record is None or path is None:
        if crud.get_experiment(session, experiment_id) is None:
            raise HTTPException(404, detail=f"experiment {experiment_id} not found")
        return {"available": False, "reason": "no stored model yet"}
    from rpg_core.exceptions import RPGError

    try:
        return _inspect(str(path), record.sha256)
    except RPGError as err:
        raise HTTPException(422, detail=f"the stored .rpg cannot be read: {err}") from None


def _task_metric(name: str) -> bool:
    """``val_pckh``, ``val_depth_rmse``, ...: a task metric's validation curve."""
    keys = {m.key for t in TASKS.values() for m in t.metrics}
    return name.startswith("val_") and name.removeprefix("val_") in keys


@router.get("/ui/figures/runs/{experiment_id}/curves")
def curves_figure(experiment_id: ExperimentId, session: SessionDep, _auth: ReadAuth) -> Any:
    """Train/val loss and accuracy per epoch (plotly figure JSON)."""
    if crud.get_experiment(session, experiment_id) is None:
        raise HTTPException(404, detail=f"experiment {experiment_id} not found")
    curves: dict[str, figures.Curve] = {}
    for p in sorted(crud.metric_series(session, experiment_id), key=lambda p: p.epoch):
        if "loss" not in p.name and "acc" not in p.name and not _task_metric(p.name):
            continue
        c = curves.setdefault(p.name, figures.Curve(p.name, [], []))
        c.epochs.append(p.epoch)
        c.values.append(p.value)
    return {"points": sum(len(c.epochs) for c in curves.values()),
            "figure": figures.training_curves_figure(list(curves.values()))}  # fmt: skip


# ----------------------------------------------------------------------------- power law


@router.get("/ui/figures/power-law")
def power_law_figure(
    session: SessionDep,
    _auth: ReadAuth,
    q: PowerLawQueryDep,
    y: Literal["accuracy", "error", "gap"] = "accuracy",
) -> Any:
    """The API's power-law analysis (the same service, query and fits) as a plotly figure and
    a table of fits; ``y=gap`` plots the train-validation gap (the API's ``quantity=gap``)."""
    if y == "gap":
        q = dataclasses.replace(q, quantity="gap")
    answer = analysis.ANSWERS.get(
        session, ("figure", q, y), lambda: _power_law_answer(session, q, y)
    )
    return Response(answer, media_type="application/json")


def _power_law_answer(session: Session, q: PowerLawQuery, y: str) -> bytes:
    result = analysis.power_law_cached(session, q)  # shared with the API's answer
    data = result.out.model_dump()
    return bytes(
        JSONResponse(
            {
                "figure": figures.power_law_figure(data, error=y == "error", laws=result.laws),
                "table": figures.power_law_table(data),
                "fit_available": data["fit_available"],
                "task": data["task"],
                "metric": data["metric"],
                "label": data["label"],
                "fitted": data["fitted"],
                "higher_is_better": data["higher_is_better"],
                "points": sum(len(s["points"]) for s in data["series"]),
                "excluded": sum(len(s["excluded"]) for s in data["series"]),
                "series": len(data["series"]),
                "focus": data["focus"],
                "summary": data["summary"],
                "x": data["x"],
                "unit": data["unit"],
                "without_file": data["without_file"],
                "budget_table": data["budget_table"],
                "excluded_runs": [
                    {"id": p["experiment_id"], "flags": p["flags"]}
                    for s in data["series"]
                    for p in s["excluded"]
                ],
            }
        ).body
    )


# ----------------------------------------------------------------------------- similarity


_RUN_ID = re.compile(r"[1-9][0-9]{0,9}", re.ASCII)  # plain ASCII digits, as every id parameter


def _parse_ids(ids: str) -> list[int]:
    parts = [x for x in ids.replace(" ", "").split(",") if x]
    if not all(_RUN_ID.fullmatch(x) for x in parts):  # int() also reads "١", "+1", "1_0"
        raise HTTPException(
            422,
            detail=[
                {
                    "field": "ids",
                    "message": "comma-separated run ids in plain digits 0-9, e.g. 3,7,12",
                }
            ],
        )
    out = [int(x) for x in parts]
    if not out or len(out) > MAX_COMPARE or any(not 1 <= i < 2**31 for i in out):
        raise HTTPException(
            422, detail=[{"field": "ids", "message": f"1 to {MAX_COMPARE} run ids (positive)"}]
        )
    return list(dict.fromkeys(out))


@router.get("/ui/figures/similarity")
def similarity_figure(
    session: SessionDep, _auth: ReadAuth, ids: Annotated[str, Query(max_length=200)]
) -> Any:
    """Overlaid similarity histograms of the runs ``ids``; runs without one are listed."""
    hists, missing = [], []
    for i in _parse_ids(ids):
        exp = crud.get_experiment(session, i)
        sim = (crud.get_result(session, i) or {}).get("similarity") if exp else None
        if exp is None or not isinstance(sim, dict) or "fractions" not in sim:
            missing.append(i)
            continue
        label = f"#{exp.id} {exp.name} ({exp.scope})"
        hists.append(figures.Histogram(label, list(sim["bin_edges"]), list(sim["fractions"])))
    return {"figure": figures.similarity_figure(hists), "shown": len(hists), "missing": missing}


# ----------------------------------------------------------------------------- sweeps

ABLATION_LABELS = {
    (True, True): "permutation + reflection",
    (True, False): "permutation only",
    (False, True): "reflection only",
    (False, False): "neither",
}


def ablation_bars(rows: list[Experiment]) -> list[figures.AblationBar]:
    """Mean best accuracy of succeeded RPG runs per (permute, reflect); [] if only one kind."""
    groups: dict[tuple[bool, bool], list[float]] = {}
    for exp in rows:
        rpg = (exp.spec or {}).get("rpg")
        if exp.status != JobStatus.succeeded or not rpg or exp.best_val_acc is None:
            continue
        key = (bool(rpg.get("permute", True)), bool(rpg.get("reflect", True)))
        groups.setdefault(key, []).append(exp.best_val_acc)
    if len(groups) < 2:
        return []
    return [
        figures.AblationBar(
            ABLATION_LABELS[k], statistics.fmean(v), statistics.pstdev(v) if len(v) > 1 else 0.0,
            len(v),
        )
        for k, v in sorted(groups.items(), reverse=True)
    ]  # fmt: skip


@router.get("/ui/figures/sweeps/{sweep_id}/ablation")
def ablation_figure(sweep_id: SweepId, session: SessionDep, _auth: ReadAuth) -> Any:
    """The paper's Fig. 5 bars for a permute/reflect sweep; figure null for other sweeps."""
    sweep = crud.get_sweep(session, sweep_id)
    if sweep is None:
        raise HTTPException(404, detail=f"sweep {sweep_id} not found")
    rows, _ = crud.list_experiments(session, crud.ListFilter(sweep_id=sweep_id), limit=1000)
    bars = ablation_bars(rows)
    if not bars:
        return {"figure": None, "reason": "not a permute/reflect ablation (or none finished)"}
    return {"figure": figures.ablation_figure(bars, f"Ablation: {sweep.name}"), "bars": len(bars)}


# ----------------------------------------------------------------------------- spec text


@router.post("/ui/api/parse-spec")
async def parse_spec_text(request: Request, settings: SettingsDep, _auth: ReadAuth) -> Any:
    """JSON or YAML text -> JSON (rpg_core.spec.safe_yaml: no aliases, bounded size and depth); the
    page then posts it to the API, which validates it. 422 naming the field ``spec`` when the
    text does not parse; 413 over ``parse_spec_max_bytes``; 429 over the per-client rate."""
    from api.yaml_body import parse_yaml_body

    limiter = getattr(request.app.state, "parse_spec_limiter", None)
    if limiter is not None:
        limiter.check(request.client.host if request.client else "?")
    limit = settings.parse_spec_max_bytes
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise HTTPException(413, detail=f"spec text larger than {limit} bytes")
    data = parse_yaml_body(bytes(raw), limit, field="spec")
    if not isinstance(data, dict):
        raise HTTPException(
            422, detail=[{"field": "spec", "message": "the spec must be a mapping of sections"}]
        )
    return data
