"""Analysis across experiments: power laws of accuracy (or the train-validation gap) against
backbone parameters, and in- against out-of-distribution accuracy. Thin: api.analysis does it."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response

from .. import analysis
from ..deps import AnalysisFilterDep, ComparisonQueryDep, PowerLawQueryDep, ReadAuth, SessionDep
from ..schemas import ComparisonOut, OODOut, PowerLawOut

router = APIRouter(prefix="/analysis", tags=["analysis"])


@router.get("/power-law", response_model=PowerLawOut)
def power_law(session: SessionDep, _auth: ReadAuth, q: PowerLawQueryDep) -> Response:
    """Succeeded runs of ``task`` (default classification) grouped by their conditions (one
    series per ``conditions_key``: runs that differ in anything but their size and seeds are
    never fitted together), each with its conditions (dict and sentence), its points, their
    mean and spread per size, and its fitted power law over every replicate (null with
    fewer than 3 distinct sizes) of ``metric`` (default: the task's first primary metric;
    classification: best_val_acc). A higher-is-better metric is fitted as ``1 - metric``, a
    lower-is-better one as itself (``fitted`` says which). Flagged runs are listed under ``excluded`` and
    left out of the fit unless ``include_flagged``. ``quantity=gap``: the train-validation gap
    per run instead (not fitted). ``summary`` says in words what the first series (``focus``)
    pooled and what was left apart. Each series names its ``method`` (rpg, width, hashed,
    prune-global); ``budget_table`` sets the methods side by side at each budget (mean and
    range over seeds, the best per budget, the difference to rpg in points and whether the
    seed ranges separate). ``x=bytes``: the model file's bytes on x instead of backbone
    parameters (runs without a file are left out and counted in ``without_file``).

    The answer is computed once per query and kept until a run succeeds, is flagged or deleted
    (``analysis.ANSWERS``)."""
    body = analysis.ANSWERS.get(
        session,
        ("api", q),
        lambda: analysis.power_law_cached(session, q).out.model_dump_json().encode(),
    )
    return Response(body, media_type="application/json")


@router.get("/ood", response_model=OODOut)
def ood(session: SessionDep, _auth: ReadAuth, f: AnalysisFilterDep) -> OODOut:
    """In-distribution against out-of-distribution accuracy: one point per succeeded run that
    was scored on eval.ood sets, with its accuracy per set (oldest first)."""
    return analysis.ood(session, f)


@router.get("/comparison", response_model=ComparisonOut)
def comparison(session: SessionDep, _auth: ReadAuth, q: ComparisonQueryDep) -> ComparisonOut:
    """The paper's Tables 4 and 5 for a sweep (``sweep``) or a task with filters: rows are
    sharing variants, columns numbers of sub-networks (stacks), each cell the mean and spread
    (min, max, std) over its runs of every metric of the task, its parameter counts and runs;
    ``best`` names the best cell per metric (direction-aware; never a cell of flagged runs).
    A table pools only runs of the same conditions but sharing and stacks: the largest group
    (or ``conditions``), the others listed in ``others``."""
    try:
        return analysis.comparison(session, q.filter, q.task or None, q.conditions)
    except analysis.ComparisonError as err:
        raise HTTPException(422, detail=[{"field": err.field, "message": str(err)}]) from None
