"""Experiments and sweeps as records: create (queued), read, delete. Their state changes after
creation belong to ``api.crud.lifecycle``."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from rpg_core.catalog.archs import ARCHS
from rpg_core.exceptions import RPGConfigError
from rpg_core.spec import ExperimentSpec
from rpg_core.spec.conditions import conditions_of, key_of
from rpg_core.spec.model import sharing_and_stacks

from ..models import Experiment, ExperimentTag, MetricPoint, Result, StoredFile, Sweep, utcnow
from ..status import FINISHED
from .errors import ConflictError
from .lifecycle import new_job_values

log = logging.getLogger(__name__)


def _scope_of(spec: dict[str, Any]) -> str:
    rpg = spec.get("rpg")
    if not rpg:
        return _sharing_scope(spec.get("model") or {})
    scope = rpg.get("scope", "global")
    return scope if isinstance(scope, str) else "custom"


def _sharing_scope(model: dict[str, Any]) -> str:
    """A stacked model with ``sharing: rpg`` (the default) and no ``rpg`` section has rings all
    the same: ``global`` (hourglass: one ring) or ``block`` (encdec: a ring per block)."""
    if sharing_and_stacks(model)[0] != "rpg":
        return "plain"
    info = ARCHS.get(str(model.get("arch")))
    return "block" if info is not None and info.ring_blocks else "global"


def _conditions(
    spec: dict[str, Any] | ExperimentSpec,
) -> tuple[dict[str, Any] | None, str | None]:
    """The run's conditions and their key (rpg_core.spec.conditions); (None, None) for a spec they
    cannot be derived from (logged: the run is then shown apart, as of unknown conditions)."""
    try:
        conditions = conditions_of(spec)
        return conditions, key_of(conditions)
    except (RPGConfigError, ValueError, TypeError) as err:
        name = spec.name if isinstance(spec, ExperimentSpec) else spec.get("name")
        log.warning("run %r: no conditions recorded: %s", name, err)
        return None, None


def _values_for(
    spec: dict[str, Any],
    sweep_id: int | None,
    study_id: int | None = None,
    trial_number: int | None = None,
    parsed: ExperimentSpec | None = None,
) -> dict[str, Any]:
    """The columns of a new queued experiment of ``spec`` (its tags are rows of their own);
    ``parsed``: the ExperimentSpec ``spec`` is the dump of, when the caller has it (saves
    parsing it again for its conditions)."""
    rpg = spec.get("rpg") or {}
    conditions, key = _conditions(spec if parsed is None else parsed)
    return {
        "name": spec["name"],
        "spec": spec,
        "arch": spec["model"]["arch"],
        "dataset": spec["data"]["dataset"],
        "ring_size": rpg.get("ring_size"),
        "scope": _scope_of(spec),
        "task": spec.get("task") or "classification",
        "sweep_id": sweep_id,
        "conditions": conditions,
        "conditions_key": key,
        "study_id": study_id,
        "trial_number": trial_number,
        **new_job_values(),
    }


def _tags_of(spec: dict[str, Any]) -> list[str]:
    return sorted(set(spec.get("tags") or []))


def _row_for(spec: dict[str, Any], sweep_id: int | None) -> Experiment:
    exp = Experiment(**_values_for(spec, sweep_id))
    exp.tag_rows = [ExperimentTag(tag=t) for t in _tags_of(spec)]
    return exp


def create_experiment(
    session: Session,
    spec: dict[str, Any],
    sweep_id: int | None = None,
    *,
    study_id: int | None = None,
    trial_number: int | None = None,
    dispatched: bool = False,
    parsed: ExperimentSpec | None = None,
) -> int:
    """Insert a queued experiment (``spec`` is a validated ExperimentSpec dump, ``parsed`` that
    ExperimentSpec where the caller has it); not committed. A search trial names its study and
    Optuna trial number (unique together). ``dispatched``: marked as sent already (see
    ``lifecycle.dispatch_premarked``)."""
    values = _values_for(spec, sweep_id, study_id, trial_number, parsed)
    if dispatched:
        values["dispatched_at"] = utcnow()
    # prebuilt statements with the row as parameters, not the ORM's unit of work (a seventh of
    # the insert's CPU, issue 27); the columns' Python defaults apply as in the ORM
    exp_id = int(session.execute(_INSERT_EXPERIMENT, values).scalar_one())
    tags = _tags_of(spec)
    if tags:
        session.execute(_INSERT_TAG, [{"experiment_id": exp_id, "tag": t} for t in tags])
    return exp_id


_INSERT_EXPERIMENT = insert(Experiment).returning(Experiment.id)
_INSERT_TAG = insert(ExperimentTag)


def create_sweep(
    session: Session, name: str, sweep_spec: dict[str, Any], specs: Sequence[dict[str, Any]]
) -> tuple[int, list[int]]:
    """Insert a sweep and its experiments (not committed: the caller commits once)."""
    sweep = Sweep(name=name, spec=sweep_spec)
    session.add(sweep)
    session.flush()
    rows = [_row_for(spec, sweep.id) for spec in specs]
    session.add_all(rows)
    session.flush()
    return sweep.id, [r.id for r in rows]


def get_experiment(session: Session, experiment_id: int) -> Experiment | None:
    return session.get(Experiment, experiment_id)


def get_result(session: Session, experiment_id: int) -> dict[str, Any] | None:
    row = session.get(Result, experiment_id)
    return None if row is None else row.data


def results_of(session: Session, ids: list[int]) -> dict[int, dict[str, Any]]:
    """The stored results of these experiments (those that have one), in one query."""
    if not ids:
        return {}
    rows = session.execute(
        select(Result.experiment_id, Result.data).where(Result.experiment_id.in_(ids))
    )
    return {int(r[0]): r[1] for r in rows}


def delete_experiment(session: Session, experiment_id: int) -> list[str]:
    """Delete a finished run with its metrics, result and file rows; returns the files' stored
    paths (relative to the artifact dir) for the caller to remove after the commit."""
    exp = session.get(Experiment, experiment_id, with_for_update=True)
    if exp is None:
        raise KeyError(experiment_id)
    if exp.status not in FINISHED:
        raise ConflictError(
            f"experiment {experiment_id} is {exp.status}; cancel it and wait until it has stopped"
        )
    paths = list(
        session.scalars(select(StoredFile.path).where(StoredFile.experiment_id == experiment_id))
    )
    for model in (MetricPoint, Result, StoredFile):
        session.execute(delete(model).where(model.experiment_id == experiment_id))
    session.delete(exp)
    session.flush()
    return paths


def get_sweep(session: Session, sweep_id: int) -> Sweep | None:
    return session.get(Sweep, sweep_id)


def list_sweeps(session: Session, limit: int = 50, before_id: int | None = None) -> list[Sweep]:
    q = select(Sweep).order_by(Sweep.id.desc()).limit(limit)
    if before_id is not None:
        q = q.where(Sweep.id < before_id)
    return list(session.scalars(q))


def sweep_counts(session: Session, sweep_ids: Iterable[int]) -> dict[int, dict[str, int]]:
    ids = list(sweep_ids)
    out: dict[int, dict[str, int]] = {i: {} for i in ids}
    if not ids:
        return out
    q = (
        select(Experiment.sweep_id, Experiment.status, func.count())
        .where(Experiment.sweep_id.in_(ids))
        .group_by(Experiment.sweep_id, Experiment.status)
    )
    for sweep_id, status, n in session.execute(q).all():
        if sweep_id is not None:
            out[sweep_id][status] = n
    return out


def count_dispatched(session: Session, ids: Sequence[int]) -> int:
    """How many of these runs were sent to a worker (their dispatch was recorded)."""
    if not ids:
        return 0
    q = select(func.count()).where(Experiment.id.in_(ids), Experiment.dispatched_at.is_not(None))
    return int(session.scalar(q) or 0)
