"""Analysis across experiments: power laws of accuracy (or the train-validation gap) against
backbone parameters, and in- against out-of-distribution accuracy. Thin: api.analysis does it."""

from __future__ import annotations

from fastapi import APIRouter

from .. import analysis
from ..deps import AnalysisFilterDep, PowerLawQueryDep, ReadAuth, SessionDep
from ..schemas import OODOut, PowerLawOut

router = APIRouter(prefix="/analysis", tags=["analysis"])


@router.get("/power-law", response_model=PowerLawOut)
def power_law(session: SessionDep, _auth: ReadAuth, q: PowerLawQueryDep) -> PowerLawOut:
    """Succeeded runs grouped by (arch, scope, dataset), each with its fitted power law
    (null with fewer than 3 distinct sizes). Flagged runs are listed under ``excluded`` and
    left out of the fit unless ``include_flagged``. ``quantity=gap``: the train-validation gap
    per run instead (not fitted)."""
    return analysis.power_law(session, q).out


@router.get("/ood", response_model=OODOut)
def ood(session: SessionDep, _auth: ReadAuth, f: AnalysisFilterDep) -> OODOut:
    """In-distribution against out-of-distribution accuracy: one point per succeeded run that
    was scored on eval.ood sets, with its accuracy per set (oldest first)."""
    return analysis.ood(session, f)
