"""Replicates: a sweep's ``seeds`` run every experiment once per seed, every source of a run's
randomness redrawn at once.

Which seed drives what:

- ``train.seed``: the initial values of the ordinary weights (a plain network's convs, and the
  stem, batchnorm and head of an RPG network), the order of the training batches and the
  augmentation draws of every epoch.
- ``rpg.seed``: everything random in the rings: the ring's initial values and the permutation
  and signs of every generating matrix (each ring's own seed is derived from it and the ring's
  name). ``train.seed`` does not touch them: a spread over ``train.seed`` alone keeps the rings'
  draws fixed and understates the run-to-run variability of an RPG network.
- Fixed on purpose (not a replicate's randomness): the data (train/validation split, subsets and
  the synthetic sets use a fixed seed, ``rpg_core.data.images.SPLIT_SEED``) and the evaluation
  draws (``eval.ood[].seed`` of a shift): every replicate trains and is scored on the same images.

A sweep's ``seeds: [0, 1, 2]`` sets, for seed ``s``, ``train.seed = s`` and ``rpg.seed = s``
(the rings that ``model.sharing: rpg`` or ``model.recurrence.mode: rpg`` choose when ``rpg`` is
omitted are written out with that seed; a plain network has only ``train.seed``), and names the
run ``<experiment>-seed_<s>``. ``seeds`` replaces the base's ``train.seed`` and ``rpg.seed``; a
grid or an extra that sets them too is refused (one way to vary them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import Field

from ..exceptions import RPGConfigError
from . import ExperimentSpec, parse_spec
from .model import recurrence_rpg, sharing_rpg

MAX_SEEDS = 100
SEED_FIELDS = ("train.seed", "rpg.seed")  # what a replicate's seed sets
Seed = Annotated[int, Field(strict=True, ge=0, lt=2**31)]  # train.seed's range (rpg.seed's wider)
SEEDS_DESCRIPTION = (
    "replicates: run every experiment once per seed; seed s sets train.seed and rpg.seed to s "
    "(weights' init, batch order, augmentation and the rings' values, permutations and signs)"
)


def unique_seeds(seeds: list[int]) -> list[int]:
    """The ``seeds`` of a sweep, each once (pydantic validator)."""
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ValueError(f"each seed once; repeated: {', '.join(map(str, repeated))}")
    return seeds


def _sets(over: Mapping[str, Any], path: str) -> bool:
    cur: Any = over
    for key in path.split("."):
        if not isinstance(cur, Mapping) or key not in cur:
            return False
        cur = cur[key]
    return True


def check_no_other_seeds(grid: Mapping[str, Any], extra: Sequence[Mapping[str, Any]]) -> None:
    """Refuse a grid or an extra that varies a seed ``seeds`` sets."""
    for path in SEED_FIELDS:
        if path in grid:
            raise RPGConfigError(
                f"grid.{path}: seeds sets train.seed and rpg.seed of every run; remove "
                f"grid.{path} or seeds"
            )
        for i, over in enumerate(extra):
            if _sets(over, path):
                raise RPGConfigError(
                    f"extra[{i}].{path}: seeds sets train.seed and rpg.seed of every run; "
                    f"remove {path} from the extra or seeds"
                )


def _rings(spec: ExperimentSpec) -> dict[str, Any] | None:
    """The spec's ``rpg`` section as JSON, or the rings its model chooses when it is omitted
    (sharing rpg, recurrence rpg); None for a plain network."""
    if spec.rpg is not None:
        return spec.rpg.model_dump(mode="json")
    model = spec.model
    if model.resolved_sharing() == "rpg":
        return sharing_rpg(model, None).model_dump(mode="json")
    if model.recurrence is not None and model.recurrence.mode == "rpg":
        return recurrence_rpg(model.recurrence, None).model_dump(mode="json")
    return None


def replicate(spec: ExperimentSpec, seed: int) -> ExperimentSpec:
    """``spec`` as the replicate of seed ``seed`` (see the module's docstring)."""
    data = spec.model_dump(mode="json")
    data["train"]["seed"] = seed
    rings = _rings(spec)
    if rings is not None:
        data["rpg"] = {**rings, "seed": seed}
    suffix = f"-seed_{seed}"
    data["name"] = f"{spec.name[: 128 - len(suffix)]}{suffix}"
    return parse_spec(data)


def replicate_all(
    specs: Sequence[ExperimentSpec],
    seeds: Sequence[int],
    grid: Mapping[str, Any],
    extra: Sequence[Mapping[str, Any]],
    limit: int,
) -> list[ExperimentSpec]:
    """Every experiment once per seed, in order (an experiment's replicates together)."""
    check_no_other_seeds(grid, extra)
    count = len(specs) * len(seeds)
    if count > limit:
        raise RPGConfigError(
            f"seeds: {len(specs)} experiments x {len(seeds)} seeds = {count} runs; at most "
            f"{limit} are allowed"
        )
    return [replicate(spec, seed) for spec in specs for seed in seeds]
