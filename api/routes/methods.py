"""The methods registry (rpg_core.catalog.methods, issue 24): the ways to shrink a network to a
parameter budget that a spec's ``method`` can name, with their references and how each reads
``method.budget``."""

from __future__ import annotations

from fastapi import APIRouter

from rpg_core.catalog.methods import METHODS

from ..deps import ReadAuth
from ..schemas import MethodOut

router = APIRouter(tags=["methods"])


@router.get("/methods", response_model=list[MethodOut])
def methods(_auth: ReadAuth) -> list[MethodOut]:
    """The methods in registry order: rpg, width, hashed, prune-global, prune-filters."""
    return [MethodOut.model_validate(m.as_dict()) for m in METHODS.values()]
