"""Sweeps: a base spec and a grid expand into experiments (shared by ``rpg sweep`` and the API).

A sweep file (YAML or JSON)::

    name: fig4-digits
    base: {model: {arch: resnet18}, rpg: {ring_size: 1000}, data: {dataset: digits}}
    grid:                      # dotted paths into the spec; the cartesian product is taken
      rpg.ring_size: [250, 1000, 4000]
      model.arch: [resnet18, resnet34]
    extra:                     # optional: more experiments, each a partial override of base
      - {name: plain, rpg: null}
    seeds: [0, 1, 2]           # optional: replicates, each experiment once per seed

Each experiment's name is the sweep's name plus its grid values (and ``-seed_<s>``). A seed
sets ``train.seed`` and ``rpg.seed`` together: :mod:`rpg_core.spec.replicates` says which seed drives
what.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from ..exceptions import RPGConfigError
from . import NAME_RE, ExperimentSpec, format_validation_error, parse_spec
from .replicates import MAX_SEEDS, SEEDS_DESCRIPTION, Seed, replicate_all, unique_seeds
from .search import SearchSpec, StudyPlan, check_search, plan_studies, set_path

MAX_EXPERIMENTS = 1000


class SweepSpec(BaseModel):
    """A sweep: ``base`` spec, ``grid`` of dotted-path values, and ``extra`` overrides."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("sweep", pattern=NAME_RE)
    base: dict[str, Any] = Field(default_factory=dict, description="the spec every run starts from")
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="dotted path -> values")
    extra: list[dict[str, Any]] = Field(default_factory=list, description="partial overrides")
    tags: list[str] = Field(default_factory=list)
    seeds: Annotated[list[Seed], AfterValidator(unique_seeds)] = Field(
        default_factory=list, max_length=MAX_SEEDS, description=SEEDS_DESCRIPTION
    )
    search: SearchSpec | None = Field(
        None, description="a hyper-parameter search per grid point (docs/SEARCH.md)"
    )


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _label(value: Any) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]", "", str(value))[:24] or "x"


def parse_sweep(data: dict[str, Any] | SweepSpec) -> SweepSpec:
    if isinstance(data, SweepSpec):
        return data
    if not isinstance(data, dict):
        raise RPGConfigError(f"a sweep must be a mapping, got {type(data).__name__}")
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as err:
        raise RPGConfigError(f"invalid sweep: {format_validation_error(err, SweepSpec)}") from None


def sweep_size(sweep: dict[str, Any] | SweepSpec) -> int:
    """How many experiments ``sweep`` expands to, counted without expanding it: the product of
    the grid's value counts plus the extra runs (a grid of 4 keys x 1,000 values is 10^12,
    counted in microseconds)."""
    sw = parse_sweep(sweep)
    points = math.prod(len(values) for values in sw.grid.values()) + len(sw.extra)
    points *= max(len(sw.seeds), 1) if sw.search is not None else 1
    return points * (sw.search.n_trials if sw.search is not None else 1)


def check_sweep_size(sweep: dict[str, Any] | SweepSpec, limit: int = MAX_EXPERIMENTS) -> int:
    """The sweep's size; raises RPGConfigError naming the grid's keys and ``limit`` when it
    is over it (before anything is expanded)."""
    sw = parse_sweep(sweep)
    for path, values in sw.grid.items():
        if not values:
            raise RPGConfigError(f"grid.{path}: give at least one value")
    count = sweep_size(sw)
    limit = min(limit, MAX_EXPERIMENTS)
    if count > limit:
        counts = " x ".join(f"{p} ({len(v)})" for p, v in sw.grid.items()) or "no grid"
        extra = f" + {len(sw.extra)} extra" if sw.extra else ""
        if sw.search is not None:
            extra += f", x {len(sw.seeds) or 1} seeds x {sw.search.n_trials} trials (search)"
        raise RPGConfigError(
            f"sweep expands to {count} experiments ({counts}{extra}); at most {limit} are "
            f"allowed: give fewer values for the grid keys {', '.join(sw.grid) or '-'}"
        )
    return count


def expand(
    sweep: dict[str, Any] | SweepSpec, max_experiments: int = MAX_EXPERIMENTS
) -> list[ExperimentSpec]:
    """The experiments of a sweep, validated; errors name the experiment and the field.

    The size is checked first (:func:`check_sweep_size`), so an oversized grid costs nothing.
    A sweep with a ``search`` has no fixed list of experiments: :func:`expand_search`."""
    sw = parse_sweep(sweep)
    if sw.search is not None:
        raise RPGConfigError(
            "search: a search sweep's trials are chosen as they finish (Optuna, in the service): "
            "submit it with rpg submit-sweep or POST /api/sweeps (docs/SEARCH.md)"
        )
    return _expand(sw, max_experiments)


def expand_search(
    sweep: dict[str, Any] | SweepSpec, max_experiments: int = MAX_EXPERIMENTS
) -> list[StudyPlan]:
    """The studies of a search sweep: one per grid point (and seed), each the spec its trials
    start from; the whole size (points x trials) is checked first, then the search section
    against the base (:func:`rpg_core.spec.search.check_search`, errors name the field)."""
    sw = parse_sweep(sweep)
    if sw.search is None:
        raise RPGConfigError("search: this sweep has no search section")
    check_sweep_size(sw, max_experiments)
    check_search(sw.search, sw.base, list(sw.grid))
    points = _expand(sw.model_copy(update={"search": None}), max_experiments)
    return plan_studies([s.model_dump(mode="json") for s in points])


def _expand(sw: SweepSpec, max_experiments: int) -> list[ExperimentSpec]:
    check_sweep_size(sw, max_experiments)
    raw: list[dict[str, Any]] = []
    paths = list(sw.grid)
    for combo in itertools.product(*sw.grid.values()) if paths else [()]:
        d = copy.deepcopy(sw.base)
        for path, value in zip(paths, combo, strict=True):
            set_path(d, path, value, field="grid")
        suffix = "-".join(
            f"{p.split('.')[-1]}_{_label(v)}" for p, v in zip(paths, combo, strict=True)
        )
        d["name"] = f"{sw.name}-{suffix}"[:128] if suffix else sw.name
        raw.append(d)
    for i, over in enumerate(sw.extra):
        d = _merge(sw.base, over)
        d["name"] = f"{sw.name}-{over.get('name', f'extra{i}')}"[:128]
        raw.append(d)
    specs = []
    for d in raw:
        d["tags"] = sorted(set(d.get("tags", [])) | set(sw.tags))
        try:
            specs.append(parse_spec(d))
        except RPGConfigError as err:
            raise RPGConfigError(f"sweep experiment {d['name']!r}: {err}") from None
    if sw.seeds:  # replicates: each experiment once per seed (rpg_core.spec.replicates)
        specs = replicate_all(specs, sw.seeds, sw.grid, sw.extra, MAX_EXPERIMENTS)
    return specs


def load_sweep(path: str | Path) -> SweepSpec:
    """Read a sweep file (YAML or JSON)."""
    from .safe_yaml import RPGYAMLError, loads

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
        data = json.loads(text) if p.suffix == ".json" else loads(text)
    except OSError as err:
        raise RPGConfigError(f"cannot read sweep file {str(p)!r}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise RPGConfigError(f"sweep file {str(p)!r} is not UTF-8 text") from None
    except (json.JSONDecodeError, RecursionError, RPGYAMLError) as err:
        raise RPGConfigError(f"sweep file {str(p)!r} is not valid YAML/JSON: {err}") from None
    return parse_sweep(data)


_LABELS = ("name", "tags")


def _leaves(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        path = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(_leaves(v, path))
        else:
            out[path] = v
    return out


def _at(d: Any, path: str) -> Any:
    for k in path.split("."):
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def varied_fields(sweep: dict[str, Any] | SweepSpec) -> list[str]:
    """The dotted spec paths a sweep's experiments differ in, read from the sweep itself (no
    expansion): grid paths with two or more distinct values, and the paths an ``extra``
    override sets to something other than the base's (names and tags left out)."""
    sw = parse_sweep(sweep)
    out = {
        p
        for p, values in sw.grid.items()
        if len({json.dumps(v, sort_keys=True) for v in values}) > 1
    }
    for over in sw.extra:
        for path, value in _leaves(over).items():
            if path.split(".")[0] not in _LABELS and _at(sw.base, path) != value:
                out.add(path)
    if sw.search is not None:  # the searched knobs differ between a study's trials
        out.update(sw.search.space)
    return sorted(out)
