"""Experiments: submit, list, show, cancel, retry, delete."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Response

from rpg_core.spec import ExperimentSpec
from rpg_core.training.result import ExperimentResult

from .. import crud
from ..crud import lifecycle
from ..deps import ExperimentId, ListQueryDep, ReadAuth, SessionDep, SettingsDep, WriteAuth
from ..redact import redact
from ..schemas import Created, ExperimentDetail, ExperimentPage, ExperimentSummary, StatusOut
from ..status import JobStatus
from ..storage import StoreUnavailable, open_store, remove_files
from ..validation import check_devices, check_limits
from ..yaml_body import YamlBodyRoute, yaml_request_body

log = logging.getLogger(__name__)
router = APIRouter(prefix="/experiments", tags=["experiments"], route_class=YamlBodyRoute)

SPEC_EXAMPLES: dict[str, Any] = {
    "rpg": {
        "summary": "ResNet-18 with a 45k global ring on digits",
        "value": {
            "name": "r18-rpg-45k",
            "model": {"arch": "resnet18", "width": 0.25},
            "rpg": {"ring_size": 45000, "scope": "global"},
            "data": {"dataset": "digits"},
            "train": {"epochs": 15, "batch_size": 128},
            "tags": ["demo"],
        },
    },
    "plain": {
        "summary": "the plain network (no rpg section)",
        "value": {"name": "r18-plain", "model": {"arch": "resnet18"}, "train": {"epochs": 15}},
    },
}


def _not_found(experiment_id: int) -> HTTPException:
    return HTTPException(404, detail=f"experiment {experiment_id} not found")


@router.post(
    "", status_code=201, openapi_extra=yaml_request_body("ExperimentSpec"), response_model=Created
)
def submit(
    spec: Annotated[ExperimentSpec, Body(openapi_examples=SPEC_EXAMPLES)],
    session: SessionDep,
    settings: SettingsDep,
    _auth: WriteAuth,
) -> Created:
    """Queue one experiment and send it to the worker."""
    check_limits(spec, settings)
    note = check_devices(spec, settings, session)
    premark = bool(settings.broker_url)  # the mark goes with the INSERT: one UPDATE less
    exp_id = crud.create_experiment(
        session, spec.model_dump(mode="json"), dispatched=premark, parsed=spec
    )
    if note is not None:
        lifecycle.note_queued(session, exp_id, note)
    session.commit()
    sent = lifecycle.dispatch_premarked(session, settings, [exp_id])
    return Created(id=exp_id, status=JobStatus.queued, dispatched=bool(sent))


@router.get("", response_model=ExperimentPage)
def list_experiments(session: SessionDep, _auth: ReadAuth, q: ListQueryDep) -> ExperimentPage:
    """Experiments, newest first by default; follow ``next_cursor`` for the next page."""
    # reads only (the page and its tags, which never change after the submission): no
    # BEGIN/ROLLBACK round trips around them
    session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    rows, next_cursor = crud.list_summaries(
        session, q.filter, sort=q.sort, limit=q.limit, cursor=q.cursor, key=q.cursor_key
    )
    return ExperimentPage(
        items=[ExperimentSummary.model_validate(r) for r in rows], next_cursor=next_cursor
    )


@router.get("/{experiment_id}", response_model=ExperimentDetail)
def show(
    experiment_id: ExperimentId, session: SessionDep, settings: SettingsDep, _auth: ReadAuth
) -> ExperimentDetail:
    """Spec, status, progress, timings, attempts, worker, error and result."""
    exp = crud.get_experiment(session, experiment_id)
    if exp is None:
        raise _not_found(experiment_id)
    out = ExperimentDetail.model_validate(exp)
    if out.error:  # rows an older worker wrote may name the server's folders
        out.error = redact(
            open_store(settings).redact(out.error),
            data_root=settings.data_root,
            artifact_dir=settings.artifact_dir,
        )
    stored = crud.get_result(session, experiment_id)
    out.result = ExperimentResult.model_validate(stored) if stored is not None else None
    out.has_model = crud.get_file(session, experiment_id, "model") is not None
    return out


@router.post("/{experiment_id}/cancel", response_model=StatusOut)
def cancel(experiment_id: ExperimentId, session: SessionDep, _auth: WriteAuth) -> StatusOut:
    """Queued: cancelled now. Running: "cancelling" until the worker stops. Finished: 409."""
    try:
        status = lifecycle.request_cancel(session, experiment_id)
    except KeyError:
        raise _not_found(experiment_id) from None
    session.commit()
    return StatusOut(id=experiment_id, status=status)


@router.post("/{experiment_id}/retry", response_model=StatusOut)
def retry(
    experiment_id: ExperimentId, session: SessionDep, settings: SettingsDep, _auth: WriteAuth
) -> StatusOut:
    """A failed or cancelled run goes back in the queue (409 otherwise)."""
    try:
        lifecycle.retry_experiment(session, experiment_id)
    except KeyError:
        raise _not_found(experiment_id) from None
    session.commit()
    lifecycle.dispatch_jobs(session, settings, [experiment_id])
    return StatusOut(id=experiment_id, status=JobStatus.queued)


@router.delete("/{experiment_id}", status_code=204)
def delete(
    experiment_id: ExperimentId, session: SessionDep, settings: SettingsDep, _auth: WriteAuth
) -> Response:
    """Delete a finished run and its files (409 while it is queued or running)."""
    try:
        paths = crud.delete_experiment(session, experiment_id)
    except KeyError:
        raise _not_found(experiment_id) from None
    session.commit()
    store = open_store(settings)
    try:  # its files, and the checkpoints kept for a resume
        keys = set(paths) | set(store.list(f"experiments/{int(experiment_id)}/"))
        remove_files(store, sorted(keys))
    except StoreUnavailable as err:  # the record is gone; the objects stay behind, logged
        log.warning("experiment %d deleted; its files were not: %s", experiment_id, err)
    return Response(status_code=204)
