"""The search driver: Optuna studies whose trials are experiments like any other.

A search sweep (``rpg_core.spec.search``) makes one study per grid point: a ``search_studies``
row of ours and an Optuna study in Optuna's tables of the same database
(:mod:`api.optuna_tables`). :func:`drive` is the one loop, run on submission, whenever a
trial's experiment finishes (``worker.runner``) and at every reconciler tick
(``worker.reconcile``), so a restart of the API or the workers resumes where it was:

1. *settle*: every finished trial experiment whose Optuna trial is still running is told to
   Optuna: ``succeeded`` -> its objective value, ``pruned`` -> PRUNED, ``failed`` /
   ``cancelled`` -> FAIL;
2. *repair*: an Optuna trial that is running but has no experiment (the driver died between the
   ask and the commit of the experiment) is told FAIL, and a new trial is asked in its place
   (the budget ``n_trials`` counts experiments, so none is lost);
3. *top up*: ask -> create the experiment (unique ``(study_id, trial_number)``) -> commit ->
   dispatch, until ``parallel`` trials are active or ``n_trials`` were created; a power-law
   study asks :func:`rpg_core.analysis.adaptive.propose` for the next size instead (the running
   trials' sizes pending) and enqueues it in Optuna with the proposal as the trial's user
   attribute ``proposal`` (one ledger: the study page shows how the interval shrank);
4. a study whose trials all finished (or whose rule says stop) is ``finished``.

The steps run under a per-study lock (PostgreSQL: ``SELECT ... FOR UPDATE`` on the study row;
SQLite: a file lock beside the database, as Optuna writes on its own connection), so two
drivers never ask twice for one slot.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import uuid
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from rpg_core.catalog.tasks import TASKS, task_info
from rpg_core.exceptions import RPGConfigError
from rpg_core.spec.search import SearchSpec, StudyPlan, objective_of, trial_spec
from rpg_core.training.intermediate import IntermediateReporter

from .crud import lifecycle
from .crud.experiments import create_experiment
from .models import Experiment, Result, Study, utcnow
from .optuna_tables import storage
from .search_optuna import direction, distributions, make_pruner, make_sampler
from .settings import Settings
from .status import ACTIVE, FINISHED, JobStatus

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

RUNNING, FINISHED_STATE = "running", "finished"


# ---------------------------------------------------------------- creating studies


def new_optuna_studies(search: SearchSpec, plans: list[StudyPlan], url: str) -> list[str]:
    """An Optuna study per plan, named uniquely; created before our rows (on SQLite, Optuna's
    writes must not wait on a transaction of ours). An orphan left by a failed submission is
    never read."""
    import optuna

    names = []
    for plan in plans:
        _, higher = objective_of(search, plan.base.get("task"))
        name = f"rpg-{plan.name[:100]}-{uuid.uuid4().hex[:12]}"
        optuna.create_study(storage=storage(url), study_name=name, direction=direction(higher))
        names.append(name)
    return names


def create_studies(
    session: Session,
    sweep_id: int,
    search: SearchSpec,
    plans: list[StudyPlan],
    optuna_names: list[str],
) -> list[int]:
    """A study row per plan, linked to its Optuna study (the caller commits)."""
    rows = []
    for plan, name in zip(plans, optuna_names, strict=True):
        metric, higher = objective_of(search, plan.base.get("task"))
        rows.append(
            Study(
                sweep_id=sweep_id,
                name=plan.name,
                optuna_name=name,
                search=search.model_dump(mode="json"),
                base=plan.base,
                objective=metric,
                higher_is_better=higher,
                state=RUNNING,
            )
        )
    session.add_all(rows)
    session.flush()
    return [r.id for r in rows]


def _search(row: Study) -> SearchSpec:
    return SearchSpec.model_validate(row.search)


def _epochs(row: Study) -> int:
    from rpg_core.spec import parse_spec, resolve_train

    return int(resolve_train(parse_spec(row.base).train)["epochs"])


def _salt(row: Study, asked: int) -> int:
    """The sampler's seed offset: the study's name (two grid points draw apart) and the trials
    asked so far (a sampler is rebuilt for every ask: each must draw anew, reproducibly)."""
    return zlib.crc32(row.name.encode()) % 1_000_003 + 7919 * asked


def load_study(row: Study, url: str) -> optuna.Study:
    """The Optuna study of ``row``, with its sampler and pruner rebuilt from the search."""
    import optuna

    search = _search(row)
    return optuna.load_study(
        study_name=row.optuna_name,
        storage=storage(url),
        sampler=make_sampler(search, salt=_salt(row, 0)),
        pruner=make_pruner(search, _epochs(row)),
    )


# ---------------------------------------------------------------- the driver


@contextlib.contextmanager
def _locked(session: Session, url: str, study_id: int) -> Iterator[Study | None]:
    """The study row, locked for this driver until the block ends (then committed)."""
    lock_file = None
    if url.startswith("sqlite") and ":memory:" not in url:
        path = Path(url.split("///", 1)[-1] + f".study{study_id}.lock")
        lock_file = path.open("a+b")
        fcntl.flock(lock_file, fcntl.LOCK_EX)
    try:
        row = session.execute(
            select(Study)
            .where(Study.id == study_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).scalar_one_or_none()
        yield row
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        if lock_file is not None:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
            lock_file.close()


def _trials(session: Session, study_id: int) -> list[Experiment]:
    q = select(Experiment).where(Experiment.study_id == study_id).order_by(Experiment.trial_number)
    # fresh rows: the lifecycle writes with UPDATEs, and sessions do not expire on commit
    return list(session.scalars(q.execution_options(populate_existing=True)))


def _objective_value(session: Session, exp: Experiment, metric: str) -> float | None:
    """The objective of a finished trial: its result's final value of ``metric``."""
    if exp.primary_metric == metric and exp.primary_value is not None:
        return float(exp.primary_value)
    result = session.get(Result, exp.id)
    metrics = (result.data or {}).get("metrics") if result is not None else None
    value = metrics.get(metric) if isinstance(metrics, dict) else None
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _settle(session: Session, row: Study, study: optuna.Study) -> None:
    """Tell Optuna what became of every finished trial it still thinks is running; fail the
    asked trials that never got an experiment."""
    from optuna.trial import TrialState

    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    experiments = {e.trial_number: e for e in _trials(session, row.id)}
    for number, exp in experiments.items():
        t = trials.get(number) if number is not None else None
        if number is None or t is None or t.state != TrialState.RUNNING:
            continue
        if exp.status not in FINISHED:
            continue
        if exp.status == JobStatus.succeeded:
            value = _objective_value(session, exp, row.objective)
            if value is None:
                study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
            else:
                study.tell(number, value, skip_if_finished=True)
        elif exp.status == JobStatus.pruned:
            study.tell(number, state=TrialState.PRUNED, skip_if_finished=True)
        else:
            study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
    for number, t in trials.items():
        if t.state == TrialState.RUNNING and number not in experiments:
            log.warning(
                "study %d: trial %d was asked but has no experiment (the driver stopped in "
                "between): failed in Optuna, a new trial takes its place",
                row.id,
                number,
            )
            study.tell(number, state=TrialState.FAIL, skip_if_finished=True)


def _ask(row: Study, study: optuna.Study, session: Session, pending: list[Any]) -> Any:
    """The next trial (Optuna's ask), or None when the study should stop (with the reason
    stored on the row). A power-law study enqueues the adaptive rule's next size first."""
    search = _search(row)
    study.sampler = make_sampler(search, salt=_salt(row, len(study.get_trials(deepcopy=False))))
    if search.sampler == "power-law":
        proposal = _propose(session, row, search, pending)
        if proposal.knob is None:
            row.stop_reason = proposal.reason
            return None
        path = next(iter(search.space))
        knob = int(round(proposal.knob)) if _integer_knob(search) else float(proposal.knob)
        study.enqueue_trial({path: knob}, user_attrs={"proposal": proposal.as_dict()})
    return study.ask(distributions(search))


def _replicate_seeds(row: Study, search: SearchSpec, study: Any, trial: Any) -> dict[str, Any]:
    """A power-law trial at a size the study tried before is a replicate: its seeds (train.seed
    and rpg.seed, as ``seeds:`` sets them) move on by the number of earlier trials at that size,
    so a repeat measures the seed spread instead of training the same run again (which gave the
    rule identical points and an interval narrower than the truth). Others: no change."""
    if search.sampler != "power-law":
        return {}
    path = next(iter(search.space))
    value = trial.params.get(path)
    k = sum(
        1
        for t in study.get_trials(deepcopy=False)
        if t.number < trial.number and t.params.get(path) == value
    )
    if k == 0:
        return {}
    base = row.base
    seeds = {"train.seed": int((base.get("train") or {}).get("seed", 0)) + k}
    if base.get("rpg"):
        seeds["rpg.seed"] = int(base["rpg"].get("seed", 0)) + k
    return seeds


def drive(session: Session, settings: Settings, study_id: int) -> list[int]:
    """Settle, repair and top up one study (see the module's doc); returns the experiments it
    created (dispatched after the commit). Idempotent: running it twice at once or again after a
    crash creates no trial twice and loses none."""
    from optuna.trial import TrialState

    url = settings.database_url
    created: list[int] = []
    with _locked(session, url, study_id) as row:
        if row is None or row.state != RUNNING:
            return []
        study = load_study(row, url)
        _settle(session, row, study)
        search = _search(row)
        experiments = _trials(session, row.id)
        active = sum(1 for e in experiments if e.status in ACTIVE)
        count = len(experiments)
        slots = search.parallel  # a power-law study's rule spreads the pending sizes apart
        stop = False
        asked: list[tuple[int, dict[str, Any]]] = []
        while active + len(asked) < slots and count + len(asked) < search.n_trials:
            trial = _ask(row, study, session, [dict(t) for _, t in asked])
            if trial is None:
                stop = True
                break
            try:
                params = {**dict(trial.params), **_replicate_seeds(row, search, study, trial)}
                spec = trial_spec(row.base, params, trial.number)
            except RPGConfigError as err:  # a value the probes at the bounds did not catch
                log.warning("study %d: trial %d is invalid: %s", row.id, trial.number, err)
                study.tell(trial.number, state=TrialState.FAIL)
                stop = True
                row.stop_reason = f"trial {trial.number} had an invalid spec: {err}"
                break
            asked.append((trial.number, spec))
        if url.startswith("sqlite"):
            # Optuna wrote on its own connection meanwhile: our writes start a fresh transaction
            # (the file lock still holds the study)
            session.commit()
        for number, spec in asked:
            spec["tags"] = sorted({*spec.get("tags", []), "search"})
            created.append(
                create_experiment(session, spec, row.sweep_id, study_id=row.id, trial_number=number)
            )
        active += len(asked)
        count += len(asked)
        if (stop or count >= search.n_trials) and active == 0:
            row.state = FINISHED_STATE
            row.finished_at = utcnow()
            row.stop_reason = row.stop_reason or f"all {count} trials finished"
    if created:
        lifecycle.dispatch_jobs(session, settings, created)
    return created


def drive_all(session: Session, settings: Settings) -> list[int]:
    """:func:`drive` every running study (the reconciler's tick)."""
    ids = list(session.scalars(select(Study.id).where(Study.state == RUNNING).order_by(Study.id)))
    session.rollback()
    created: list[int] = []
    for study_id in ids:
        try:
            created += drive(session, settings, study_id)
        except Exception as err:  # noqa: BLE001 - one broken study must not stop the others
            log.warning("study %d: driving it failed: %s", study_id, err)
            session.rollback()
    return created


def after_trial(session: Session, settings: Settings, experiment_id: int) -> list[int]:
    """Drive the study of ``experiment_id`` when it is a trial (the worker, once it finished)."""
    study_id = session.scalar(select(Experiment.study_id).where(Experiment.id == experiment_id))
    session.rollback()
    return [] if study_id is None else drive(session, settings, int(study_id))


# ---------------------------------------------------------------- the worker's reporter


def trial_reporter(
    session: Session, settings: Settings, experiment_id: int
) -> IntermediateReporter | None:
    """The engine callback of a trial's experiment: each evaluation -> ``trial.report``, then
    ``trial.should_prune`` (None for an experiment that is no trial, or a trial Optuna already
    finished, e.g. a failed trial retried by hand)."""
    import optuna
    from optuna.trial import TrialState

    exp = session.get(Experiment, experiment_id)
    row = session.get(Study, exp.study_id) if exp is not None and exp.study_id else None
    if exp is None or row is None or exp.trial_number is None:
        session.rollback()
        return None
    study = load_study(row, settings.database_url)
    objective = row.objective
    number = exp.trial_number
    session.rollback()
    st = storage(settings.database_url)
    trial_id = st.get_trial_id_from_study_id_trial_number(
        st.get_study_id_from_name(study.study_name), number
    )
    if st.get_trial(trial_id).state != TrialState.RUNNING:
        return None
    trial = optuna.trial.Trial(study, trial_id)

    def report(step: int, value: float) -> bool:
        try:
            trial.report(value, step)
            return bool(trial.should_prune())
        except Exception as err:  # noqa: BLE001 - the storage hiccupped: train on
            log.warning("experiment %d: reporting to its trial failed: %s", experiment_id, err)
            return False

    return IntermediateReporter(objective, report)


# ---------------------------------------------------------------- reading studies


@dataclass(frozen=True)
class TrialInfo:
    """What the power law needs of a trial's study (``api.analysis``)."""

    study_id: int
    number: int
    sampler: str
    searched: tuple[str, ...]
    base_conditions: dict[str, Any]  # the study's base spec's conditions (rpg_core.spec)


def trials_of(
    session: Session, rows: Iterable[tuple[int, int | None, int | None]]
) -> dict[int, TrialInfo]:
    """The search trials among runs already read as ``(id, study_id, trial_number)`` (the
    power law's points carry them): one query of their studies, none without a trial."""
    from rpg_core.spec.conditions import conditions_of

    rows = [r for r in rows if r[1] is not None]
    if not rows:
        return {}
    studies = {
        r.id: r for r in session.scalars(select(Study).where(Study.id.in_({r[1] for r in rows})))
    }
    info: dict[int, tuple[str, tuple[str, ...], dict[str, Any]]] = {}
    for study_id, row in studies.items():
        try:
            base = conditions_of(row.base)
        except (RPGConfigError, ValueError, TypeError):
            base = {}
        search = row.search if isinstance(row.search, dict) else {}
        info[study_id] = (
            str(search.get("sampler", "tpe")),
            tuple(sorted(search.get("space") or {})),
            base,
        )
    out = {}
    for exp_id, trial_study, number in rows:
        if trial_study is not None and trial_study in info and number is not None:
            sampler, searched, base = info[trial_study]
            out[int(exp_id)] = TrialInfo(int(trial_study), int(number), sampler, searched, base)
    return out


def _proposal_fields(proposal: Any) -> dict[str, Any]:
    """A power-law trial's record of the rule: why this size, and the intervals then."""
    p = proposal if isinstance(proposal, dict) else {}
    return {
        "reason": p.get("reason"),
        "b_interval": p.get("b_interval"),
        "target_interval": p.get("target_interval"),
        "phase": p.get("phase"),
    }


def _importance(study: optuna.Study) -> dict[str, float] | None:
    from optuna.trial import TrialState

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if len(complete) < 2 or not complete[0].params:
        return None
    try:
        import optuna

        return {
            k: float(v)
            for k, v in optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
            ).items()
        }
    except Exception as err:  # noqa: BLE001 - too few distinct values, one param, ...
        log.info("study %s: no importance: %s", study.study_name, err)
        return None


def study_summary(session: Session, row: Study) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for e in _trials(session, row.id):
        counts[e.status] = counts.get(e.status, 0) + 1
    search = _search(row)
    return {
        "id": row.id,
        "sweep_id": row.sweep_id,
        "name": row.name,
        "state": row.state,
        "sampler": search.sampler,
        "pruner": search.pruner.name,
        "n_trials": search.n_trials,
        "parallel": search.parallel,
        "objective": row.objective,
        "direction": direction(row.higher_is_better),
        "counts": counts,
        "stop_reason": row.stop_reason,
        "created_at": row.created_at,
        "finished_at": row.finished_at,
    }


def study_detail(session: Session, settings: Settings, row: Study) -> dict[str, Any]:
    """A study with its trials in order: params, status, objective, intermediate values, the
    best so far, the power-law rule's reason and intervals, and the parameter importance."""
    from optuna.trial import TrialState

    study = load_study(row, settings.database_url)
    optuna_trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    experiments = {e.trial_number: e for e in _trials(session, row.id)}
    info = task_info(row.base.get("task") or "classification")
    metric = info.metric(row.objective)
    trials, best, best_trial = [], None, None
    for number in sorted(n for n in experiments if n is not None):
        exp, t = experiments[number], optuna_trials.get(number)
        value = t.value if t is not None and t.state == TrialState.COMPLETE else None
        if value is not None and (best is None or metric.better(value, best)):
            best, best_trial = value, number
        trials.append(
            {
                "number": number,
                "experiment_id": exp.id,
                "status": exp.status,
                "state": t.state.name.lower() if t is not None else None,
                "params": dict(t.params) if t is not None else {},
                "value": value,
                "intermediate": (
                    {str(k): v for k, v in sorted(t.intermediate_values.items())} if t else {}
                ),
                "best_so_far": best,
                "started_at": exp.started_at,
                "finished_at": exp.finished_at,
                **_proposal_fields(t.user_attrs.get("proposal") if t is not None else None),
            }
        )
    out = study_summary(session, row)
    out.update(
        trials=trials,
        best={"number": best_trial, "value": best} if best_trial is not None else None,
        importance=_importance(study),
        higher_is_better=metric.higher_is_better,
    )
    return out


def studies_of_sweep(session: Session, sweep_id: int) -> list[Study]:
    return list(session.scalars(select(Study).where(Study.sweep_id == sweep_id).order_by(Study.id)))


def study_ids_by_sweep(session: Session, sweep_ids: list[int]) -> dict[int, list[int]]:
    """The studies of these sweeps, in order (one query)."""
    out: dict[int, list[int]] = {}
    if sweep_ids:
        q = select(Study.sweep_id, Study.id).where(Study.sweep_id.in_(sweep_ids))
        for sweep_id, study_id in session.execute(q.order_by(Study.id)):
            if sweep_id is not None:
                out.setdefault(int(sweep_id), []).append(int(study_id))
    return out


def list_studies(session: Session, limit: int = 100) -> list[Study]:
    return list(session.scalars(select(Study).order_by(Study.id.desc()).limit(limit)))


# ---------------------------------------------------------------- power law (the adaptive rule)


def _integer_knob(search: SearchSpec) -> bool:
    """Whether the power-law knob takes whole values: an int range, or a ring size or budget
    given as a count (a log range from 1 up)."""
    path = next(iter(search.space))
    kind, (low, _high) = next(iter(search.space[path].items()))
    return kind == "int" or (path in ("rpg.ring_size", "method.budget") and low >= 1)


def _propose(session: Session, row: Study, search: SearchSpec, asked: list[Any]) -> Any:
    """The adaptive rule's next size from the study's succeeded trials so far (the running
    ones and ``asked``, trial specs asked in this pass, are pending)."""
    from rpg_core.analysis.adaptive import AdaptiveLaw, Observation, propose

    path = next(iter(search.space))
    kind, (low, high) = next(iter(search.space[path].items()))
    info = TASKS[row.base.get("task") or "classification"]
    metric = info.metric(row.objective)
    target = search.law.target
    target_metric = info.metric(target.metric or row.objective) if target is not None else None
    rule = AdaptiveLaw(
        low=float(low),
        high=float(high),
        integer=_integer_knob(search),
        log=kind in ("log", "int"),
        initial=search.law.initial,
        max_trials=search.n_trials,
        b_width=search.law.b_width,
        target_error=(
            target_metric.as_error(target.value)
            if target is not None and target_metric is not None
            else None
        ),
        target_width=search.law.target_width,
    )
    observed = []
    for exp in _trials(session, row.id):
        value = _objective_value(session, exp, row.objective)
        knob = _knob_of(exp.spec, path)
        if exp.status != JobStatus.succeeded or value is None or knob is None:
            continue
        params = exp.backbone_params or exp.total_params or params_of(row.base, path, knob)
        observed.append(Observation(knob=knob, params=int(params), error=metric.as_error(value)))
    specs = [e.spec for e in _trials(session, row.id) if e.status in ACTIVE] + asked
    pending = [k for spec in specs if (k := _knob_of(spec, path)) is not None]
    return propose(rule, observed, lambda k: params_of(row.base, path, k), pending=pending)


def _knob_of(spec: dict[str, Any], path: str) -> float | None:
    cur: Any = spec
    for key in path.split("."):
        cur = cur.get(key) if isinstance(cur, dict) else None
    return float(cur) if isinstance(cur, int | float) else None


def params_of(base: dict[str, Any], path: str, knob: float) -> int:
    """The backbone parameter count of the study's spec at ``knob`` (the model is built, never
    trained: what a result's ``backbone`` would say). A ring's count is linear in its size
    (its elements plus what no ring generates): two builds answer every ring size."""
    import json

    key = json.dumps(base, sort_keys=True)
    value = int(knob) if float(knob).is_integer() else float(knob)
    if path == "rpg.ring_size" and isinstance(value, int) and value > 1:
        low, high = _count(key, path, 1000), _count(key, path, 2000)
        return int(round(low + (high - low) * (value - 1000) / 1000))
    return _count(key, path, value)


@lru_cache(maxsize=512)
def _count(base_json: str, path: str, value: float) -> int:
    import json

    from rpg_core.training.memory import backbone_params

    return backbone_params(trial_spec(json.loads(base_json), {path: value}, 0))
