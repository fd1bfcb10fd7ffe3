"""Search studies (issue 25): a search sweep's studies, their trials, the best so far and the
parameter importance (``api.search``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query

from .. import search
from ..deps import MAX_ID, ReadAuth, SessionDep, SettingsDep, StrictDigits
from ..models import Study
from ..schemas import StudyDetail, StudyOut

router = APIRouter(prefix="/studies", tags=["studies"])

StudyId = Annotated[int, Path(ge=1, le=MAX_ID, description="study id", examples=[1]), StrictDigits]


@router.get("", response_model=list[StudyOut])
def list_studies(
    session: SessionDep,
    _auth: ReadAuth,
    sweep_id: Annotated[int | None, Query(ge=1, le=MAX_ID), StrictDigits] = None,
    limit: Annotated[int, Query(ge=1, le=200), StrictDigits] = 100,
) -> list[StudyOut]:
    """Studies, newest first (``?sweep_id=``: one sweep's, in order)."""
    rows = (
        search.studies_of_sweep(session, sweep_id)
        if sweep_id is not None
        else search.list_studies(session, limit)
    )
    return [StudyOut.model_validate(search.study_summary(session, r)) for r in rows[:limit]]


@router.get("/{study_id}", response_model=StudyDetail)
def show_study(
    study_id: StudyId, session: SessionDep, settings: SettingsDep, _auth: ReadAuth
) -> StudyDetail:
    """A study with its trials in order (params, status, objective, intermediate values, best so
    far; a power-law study's reason and intervals per trial) and the parameter importance."""
    row = session.get(Study, study_id)
    if row is None:
        raise HTTPException(404, detail=f"study {study_id} not found")
    return StudyDetail.model_validate(search.study_detail(session, settings, row))
