"""A search section made into Optuna's parts: its sampler, its pruner and the trial's params.

The one place that maps :class:`rpg_core.spec.search.SearchSpec` onto Optuna (``api.search``
drives studies with them; ``benchmarks/bench_search.py`` runs the same in process).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

from rpg_core.spec.search import SearchSpec

if TYPE_CHECKING:
    import optuna


def distributions(search: SearchSpec) -> dict[str, optuna.distributions.BaseDistribution]:
    """The search space as Optuna distributions (keyed by the dotted spec path)."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    out: dict[str, Any] = {}
    for path, dim in search.space.items():
        kind, bounds = next(iter(dim.items()))
        if kind == "choices":
            out[path] = CategoricalDistribution(list(bounds))
        elif kind == "int":
            out[path] = IntDistribution(int(bounds[0]), int(bounds[1]))
        else:
            out[path] = FloatDistribution(float(bounds[0]), float(bounds[1]), log=kind == "log")
    return out


def grid_size(search: SearchSpec) -> int:
    return math.prod(len(next(iter(d.values()))) for d in search.space.values())


def make_sampler(search: SearchSpec, salt: int = 0) -> optuna.samplers.BaseSampler:
    """The study's sampler, seeded with ``search.seed`` (+ ``salt``: the study's index, so two
    grid points do not draw the same sequence). A sampler is rebuilt for every ask (Optuna keeps
    no sampler in its storage): TPE and CMA-ES read the finished trials from the storage."""
    import optuna

    seed = search.seed + salt
    if search.sampler == "grid":
        space = {p: list(next(iter(d.values()))) for p, d in search.space.items()}
        return optuna.samplers.GridSampler(space, seed=seed)
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if search.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if search.sampler == "power-law":  # sizes come from the adaptive rule (enqueued)
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(4, search.n_trials))


def make_pruner(search: SearchSpec, epochs: int) -> optuna.pruners.BasePruner:
    """The study's pruner; an evaluation (an epoch) is one step."""
    import optuna

    p = search.pruner
    if p.name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps
        )
    if p.name == "successive-halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=p.min_resource, reduction_factor=p.reduction_factor
        )
    if p.name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=p.min_resource,
            max_resource=p.max_resource or max(int(epochs), p.min_resource + 1),
            reduction_factor=p.reduction_factor,
        )
    return optuna.pruners.NopPruner()


def direction(higher_is_better: bool) -> Literal["maximize", "minimize"]:
    return "maximize" if higher_is_better else "minimize"


__all__ = ["direction", "distributions", "grid_size", "make_pruner", "make_sampler"]
