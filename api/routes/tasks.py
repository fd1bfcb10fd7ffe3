"""The task registry (rpg_core.catalog.tasks): what a spec's ``task`` can name, with its datasets,
architectures, sharing variants and metrics (which way is better)."""

from __future__ import annotations

from fastapi import APIRouter

from rpg_core.catalog.tasks import TASKS

from ..deps import ReadAuth
from ..schemas import TaskOut

router = APIRouter(tags=["tasks"])


@router.get("/tasks", response_model=list[TaskOut])
def tasks(_auth: ReadAuth) -> list[TaskOut]:
    """The tasks in registry order: classification, pose (paper Table 4), multitask (Table 5)."""
    return [TaskOut.model_validate(t.as_dict()) for t in TASKS.values()]
