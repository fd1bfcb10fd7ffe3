"""A spec's ``method.budget`` made concrete (issue 24): the width, ring size or pruning target
that gives the network that many backbone parameters.

The budget is read against the *dense network*: the plain network the spec's ``model`` section
names, counted on the meta device (nothing allocated: :func:`rpg_core.models.factory.plain_backbone`,
by :func:`rpg_core.rpg.params.count_params`)
(``backbone``: a plain network's conv weights except the stem; an RPG network's ring elements).

- ``rpg``, ``hashed``: ``rpg.ring_size = budget`` (an RPG network's backbone is its ring).
- ``width``: the ``model.width`` in ``(0, model.width]`` whose plain backbone is closest to the
  budget (bisection over the width; the counts are a step function of it, channels being
  rounded to whole ones).
- ``prune-global``: the dense network itself; the budget is the number of backbone weights left
  non-zero (:mod:`rpg_core.training.global_pruning`).
- ``prune-filters``: the dense network itself; the budget is the number of backbone weights left
  after whole filters go (:mod:`rpg_core.training.filter_pruning`), at least every residual
  block's ``conv1`` at one filter (:func:`rpg_core.models.blocks.filter_range`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..exceptions import RPGConfigError
from ..spec import ExperimentSpec, ModelSpec

log = logging.getLogger(__name__)

__all__ = ["BackboneOf", "ResolvedMethod", "budget_count", "resolve_method", "width_for_budget"]

MIN_WIDTH = 1e-4  # the narrowest width searched (every layer at its minimum of channels)
_BISECTIONS = 40


@dataclass(frozen=True)
class ResolvedMethod:
    """A spec whose ``method.budget`` is a count and whose model meets it."""

    spec: ExperimentSpec  # model.width / rpg.ring_size filled; method.budget as a count
    budget: int  # backbone parameters asked for
    dense_backbone: int  # the dense network's backbone parameters
    backbone: int  # what the resolved network has (width: the closest; others: the budget)


BackboneOf = Callable[[ModelSpec], int]  # a model section -> its plain backbone parameters


def width_for_budget(model: ModelSpec, budget: int, backbone_of: BackboneOf) -> tuple[float, int]:
    """``(width, backbone)``: the width in ``[MIN_WIDTH, model.width]`` whose plain backbone is
    closest to ``budget`` (ties: the smaller network). RPGConfigError naming ``method.budget``
    when the budget is below the narrowest network's or above the model's own."""
    cache: dict[float, int] = {}

    def count(w: float) -> int:
        if w not in cache:
            cache[w] = backbone_of(model.model_copy(update={"width": w}))
        return cache[w]

    lo, hi = MIN_WIDTH, model.width
    smallest, largest = count(lo), count(hi)
    if budget < smallest:
        raise RPGConfigError(
            f"method.budget: {budget} backbone parameters is below what method width can make: "
            f"the narrowest {model.arch} (every layer at its fewest channels) has {smallest}; "
            f"ask for at least {smallest}"
        )
    if budget > largest:
        raise RPGConfigError(
            f"method.budget: {budget} backbone parameters is more than the dense network's "
            f"{largest} ({model.arch} at width {model.width}); ask for at most {largest}"
        )
    if budget == largest:
        return hi, largest
    # invariant: count(lo) <= budget < count(hi)
    if smallest == budget:
        return lo, smallest
    for _ in range(_BISECTIONS):
        mid = (lo + hi) / 2
        if count(mid) <= budget:
            lo = mid
        else:
            hi = mid
    below, above = count(lo), count(hi)
    width, backbone = (lo, below) if budget - below <= above - budget else (hi, above)
    for digits in range(2, 10):  # the shortest width of the same network
        short = round(width, digits)
        if MIN_WIDTH <= short <= model.width and count(short) == backbone:
            return short, backbone
    return width, backbone


def budget_count(budget: int | float, dense: int) -> int:
    """A budget as a count: itself, or ``round(fraction * dense)`` (at least 1)."""
    return budget if isinstance(budget, int) else max(1, round(budget * dense))


def resolve_method(
    spec: ExperimentSpec, backbone_of: BackboneOf, floor_of: BackboneOf | None = None
) -> ResolvedMethod:
    """``spec`` with its method's budget made concrete (see the module). RPGConfigError naming
    ``method.budget`` when the budget exceeds the dense network, or is below the method's
    minimum. ``backbone_of``: the plain backbone of a model section
    (:func:`rpg_core.models.factory.plain_backbone` with the data's classes and channels).
    ``floor_of``: the fewest backbone weights filter pruning leaves in a model section
    (:func:`rpg_core.models.factory.filter_floor`), for ``prune-filters``; None: not checked."""
    method = spec.method
    if method is None:
        raise RPGConfigError("resolve_method needs a spec with a method section")
    dense = backbone_of(spec.model)
    budget = budget_count(method.budget, dense)
    if budget > dense:
        raise RPGConfigError(
            f"method.budget: {budget} backbone parameters is more than the dense network's "
            f"{dense} ({spec.model.arch} at width {spec.model.width}); ask for at most {dense}, "
            f"or a fraction in (0, 1]"
        )
    update: dict[str, Any] = {"method": method.model_copy(update={"budget": budget})}
    backbone = budget
    if method.name == "width":
        width, backbone = width_for_budget(spec.model, budget, backbone_of)
        update["model"] = spec.model.model_copy(update={"width": width})
        # the resolved budget is what the network has: resolving the resolved spec again (its
        # dense network is now the narrower one) gives the same width
        update["method"] = method.model_copy(update={"budget": backbone})
        log.info(
            "method width: budget %d -> width %s (%d backbone parameters)", budget, width, backbone
        )
    elif method.name == "prune-filters" and floor_of is not None:
        low = floor_of(spec.model)
        if budget < low:
            raise RPGConfigError(
                f"method.budget: {budget} backbone parameters is below what method "
                f"prune-filters can leave: every residual block's conv1 at one filter leaves "
                f"{low}; ask for at least {low}, or use method prune-global"
            )
    elif method.name in ("rpg", "hashed"):
        assert spec.rpg is not None  # the spec's method filled it
        update["rpg"] = spec.rpg.model_copy(update={"ring_size": budget})
    return ResolvedMethod(
        spec=spec.model_copy(update=update), budget=budget, dense_backbone=dense, backbone=backbone
    )
