"""Sweeps: a SweepSpec expands into experiments created in one transaction."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query

from rpg_core.exceptions import RPGConfigError
from rpg_core.spec import parse_spec
from rpg_core.spec.search import SearchError
from rpg_core.spec.sweep import SweepSpec, expand, expand_search

from .. import crud, search
from ..crud import lifecycle
from ..deps import MAX_ID, ReadAuth, SessionDep, SettingsDep, StrictDigits, SweepId, WriteAuth
from ..errors import field_error
from ..schemas import SweepCreated, SweepOut, SweepPage
from ..validation import check_devices, limit_errors
from ..yaml_body import YamlBodyRoute, yaml_request_body

log = logging.getLogger(__name__)
router = APIRouter(prefix="/sweeps", tags=["sweeps"], route_class=YamlBodyRoute)

SWEEP_EXAMPLES: dict[str, Any] = {
    "fig4": {
        "summary": "ring sizes x architectures, plus the plain networks",
        "value": {
            "name": "fig4-digits",
            "base": {
                "model": {"arch": "resnet18", "width": 0.25},
                "rpg": {"ring_size": 1000},
                "data": {"dataset": "digits"},
                "train": {"epochs": 2},
            },
            "grid": {"rpg.ring_size": [250, 1000, 4000]},
            "extra": [{"name": "plain", "rpg": None}],
            "tags": ["fig4"],
        },
    }
}


@router.post(
    "", status_code=201, openapi_extra=yaml_request_body("SweepSpec"), response_model=SweepCreated
)
def submit_sweep(
    sweep: Annotated[SweepSpec, Body(openapi_examples=SWEEP_EXAMPLES)],
    session: SessionDep,
    settings: SettingsDep,
    _auth: WriteAuth,
) -> SweepCreated:
    """Create every experiment of the sweep (all or none) and send them to the worker; a
    sweep with a ``search`` creates its studies and their first trials (docs/SEARCH.md)."""
    if sweep.search is not None:
        return _submit_search(sweep, session, settings)
    try:
        # the size is counted before anything is expanded (a 10^12 grid costs nothing)
        specs = expand(sweep, max_experiments=settings.max_sweep_experiments)
    except RPGConfigError as err:
        raise field_error("sweep", str(err)) from None
    errors = [
        e for i, s in enumerate(specs) for e in limit_errors(s, settings, f"experiments[{i}].")
    ]
    if errors:
        raise HTTPException(422, detail=errors[:50])
    # train.devices against the largest worker host: 422, or each run's note of what it waits for
    by_devices = {s.train.devices: s for s in specs}
    notes = {d: check_devices(s, settings, session) for d, s in by_devices.items()}
    sweep_id, ids = crud.create_sweep(
        session,
        sweep.name,
        sweep.model_dump(mode="json"),
        [s.model_dump(mode="json") for s in specs],
    )
    for exp_id, s in zip(ids, specs, strict=True):
        note = notes[s.train.devices]
        if note is not None:
            lifecycle.note_queued(session, exp_id, note)
    session.commit()
    sent = lifecycle.dispatch_jobs(session, settings, ids)
    return SweepCreated(id=sweep_id, name=sweep.name, experiment_ids=ids, dispatched=len(sent))


def _submit_search(sweep: SweepSpec, session: SessionDep, settings: SettingsDep) -> SweepCreated:
    assert sweep.search is not None
    try:
        plans = expand_search(sweep, max_experiments=settings.max_sweep_experiments)
    except SearchError as err:
        raise field_error(err.field, err.message) from None
    except RPGConfigError as err:
        raise field_error("sweep", str(err)) from None
    errors = [
        e
        for i, p in enumerate(plans)
        for e in limit_errors(parse_spec(p.base), settings, f"studies[{i}].")
    ]
    if errors:
        raise HTTPException(422, detail=errors[:50])
    names = search.new_optuna_studies(sweep.search, plans, settings.database_url)
    sweep_id, _ = crud.create_sweep(session, sweep.name, sweep.model_dump(mode="json"), [])
    study_ids = search.create_studies(session, sweep_id, sweep.search, plans, names)
    session.commit()
    ids: list[int] = []
    for study_id in study_ids:
        try:
            ids += search.drive(session, settings, study_id)
        except Exception:  # the studies are stored: the reconciler asks for their trials
            log.exception(
                "sweep %d: the first trials of study %d were not asked", sweep_id, study_id
            )
            session.rollback()
    dispatched = crud.count_dispatched(session, ids)
    return SweepCreated(
        id=sweep_id, name=sweep.name, experiment_ids=ids, dispatched=dispatched, study_ids=study_ids
    )


def sweep_varies(spec: Any) -> dict[str, Any]:
    """``varies`` and ``compares_variants`` of a stored sweep spec (empty when it no longer
    parses)."""
    from rpg_core.exceptions import RPGConfigError
    from rpg_core.spec.conditions import VARIANT_KNOBS
    from rpg_core.spec.sweep import varied_fields

    try:
        varies = varied_fields(spec) if isinstance(spec, dict) else []
    except RPGConfigError:
        varies = []
    return {"varies": varies, "compares_variants": any(v in VARIANT_KNOBS for v in varies)}


def sweep_task(spec: Any) -> str:
    """The task of a sweep's base spec (classification when it names none)."""
    base = spec.get("base") if isinstance(spec, dict) else None
    task = base.get("task") if isinstance(base, dict) else None
    return task if isinstance(task, str) else "classification"


@router.get("", response_model=SweepPage)
def list_sweeps(
    session: SessionDep,
    _auth: ReadAuth,
    limit: Annotated[int, Query(ge=1, le=200), StrictDigits] = 50,
    cursor: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="next_cursor"), StrictDigits
    ] = None,
) -> SweepPage:
    """Sweeps, newest first, with their experiments' counts by status."""
    rows = crud.list_sweeps(session, limit=limit + 1, before_id=cursor)
    more = len(rows) > limit
    rows = rows[:limit]
    counts = crud.sweep_counts(session, [r.id for r in rows])
    studies = search.study_ids_by_sweep(session, [r.id for r in rows])
    items = [
        SweepOut(
            id=r.id,
            name=r.name,
            created_at=r.created_at,
            counts=counts[r.id],
            total=sum(counts[r.id].values()),
            task=sweep_task(r.spec),
            study_ids=studies.get(r.id, []),
            **sweep_varies(r.spec),
        )
        for r in rows
    ]
    return SweepPage(items=items, next_cursor=str(rows[-1].id) if more else None)


@router.get("/{sweep_id}", response_model=SweepOut)
def show_sweep(sweep_id: SweepId, session: SessionDep, _auth: ReadAuth) -> SweepOut:
    """A sweep's spec and its progress (experiment counts by status)."""
    sweep = crud.get_sweep(session, sweep_id)
    if sweep is None:
        raise HTTPException(404, detail=f"sweep {sweep_id} not found")
    counts = crud.count_by_status(session, sweep_id)
    return SweepOut(
        id=sweep.id,
        name=sweep.name,
        created_at=sweep.created_at,
        counts=counts,
        total=sum(counts.values()),
        spec=sweep.spec,
        task=sweep_task(sweep.spec),
        study_ids=[s.id for s in search.studies_of_sweep(session, sweep_id)],
        **sweep_varies(sweep.spec),
    )
