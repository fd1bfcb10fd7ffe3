"""Power-law analysis across experiments: accuracy against backbone parameters."""

from __future__ import annotations

from fastapi import APIRouter

from .. import analysis
from ..deps import PowerLawQueryDep, ReadAuth, SessionDep
from ..schemas import PowerLawOut

router = APIRouter(prefix="/analysis", tags=["analysis"])


@router.get("/power-law", response_model=PowerLawOut)
def power_law(session: SessionDep, _auth: ReadAuth, q: PowerLawQueryDep) -> PowerLawOut:
    """Succeeded runs grouped by (arch, scope, dataset), each with its fitted power law
    (null with fewer than 3 distinct sizes). Flagged runs are listed under ``excluded`` and
    left out of the fit unless ``include_flagged``."""
    return analysis.power_law(session, q).out
