"""One training job from claim to result: the body of the ``rpg.train_experiment`` task.

The job runs under a lease (fencing token) taken with ``lifecycle.claim_experiment``; every write
is fenced by it, so two workers never both write one experiment. Every status change goes through
``api.crud.lifecycle``: this module builds no SQL and imports no table. Attempts are counted by
the claim: a job that raised (or whose worker died) ``max_attempts`` times ends ``failed`` with
the reason.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import time
import traceback
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy.orm import Session, sessionmaker

from api.crud import files as stored
from api.crud import lifecycle
from api.db import make_engine, make_sessionmaker
from api.settings import Settings
from api.storage import local_copy, open_store
from rpg_core.training.result import ExperimentResult

from .artifacts import CheckpointUpload, checkpoint_dir, fetch_checkpoint, save_outputs
from .config import WorkerSettings
from .control import JobControl, Reporter
from .devices import HostDevices, allocate, host_devices
from .errors import JobOutOfMemory, is_permanent, redact
from .limits import is_out_of_memory, job_memory_limit, memory_limit, out_of_memory_message

log = logging.getLogger(__name__)


def worker_name() -> str:
    """``host:pid`` of this process: the lease owner (and how a dead local owner is found)."""
    return f"{socket.gethostname()}:{os.getpid()}"


@lru_cache(maxsize=4)
def sessions_for(database_url: str) -> sessionmaker[Session]:
    return make_sessionmaker(make_engine(database_url))


def run_experiment(
    settings: Settings, wcfg: WorkerSettings, experiment_id: int, worker: str | None = None
) -> str:
    """Claim and run one experiment; returns what happened (succeeded, pruned, failed,
    cancelled, requeued, deferred, lost or skipped). Never raises for a job's own error: it is
    recorded instead."""
    sessions = sessions_for(settings.database_url)
    worker = worker or worker_name()
    with sessions() as session:
        previous = lifecycle.job_state(session, experiment_id)
        prior_error = previous.error if previous is not None else None
        prior_worker = previous.worker if previous is not None else None
        session.rollback()
        lease = _claim(session, experiment_id, worker, settings.lease_s)
        if lease is None:
            log.info(
                "experiment %d is not claimable (finished, cancelled or leased)", experiment_id
            )
            return "skipped"
        if lease.attempt > wcfg.max_attempts:
            reason = prior_error or f"its worker ({prior_worker}) died while running it"
            lifecycle.fail_experiment(
                session,
                experiment_id,
                lease.token,
                f"gave up after {wcfg.max_attempts} attempts; the last one failed: {reason}",
                attempts=wcfg.max_attempts,  # this claim only records giving up
            )
            return "failed"
        # the devices it asks for (train.devices), all at once, on this host: else back it goes
        host = host_devices()
        wanted = _devices_of(lease.spec)
        alloc = allocate(host, wanted)
        if alloc is None:
            note = _waiting_note(host, wanted)
            log.info("experiment %d: %s", experiment_id, note)
            lifecycle.release(session, experiment_id, lease.token, note)
            return "deferred"
        with alloc:
            if host.kind == "gpu":  # the ranks (or the one process) see the devices it holds
                os.environ["CUDA_VISIBLE_DEVICES"] = alloc.cuda_visible()
            return _run_leased(settings, wcfg, sessions, session, lease)


def _devices_of(spec: dict[str, Any]) -> int:
    """A job's ``train.devices`` (1 for a spec that no longer parses: its run fails with why)."""
    from rpg_core.spec import parse_spec

    try:
        return int(parse_spec(spec).train.devices)
    except Exception:  # noqa: BLE001 - the training reports a bad spec
        return 1


def _waiting_note(host: HostDevices, wanted: int) -> str:
    name = socket.gethostname()
    if wanted > len(host.devices):
        return (
            f"waiting for a worker with {wanted} devices (train.devices): {name} has "
            f"{len(host.devices)}"
        )
    return (
        f"waiting for {wanted} free devices on one host (train.devices): {name} has "
        f"{host.free()} of {len(host.devices)} free"
    )


def _claim(
    session: Session, experiment_id: int, worker: str, lease_s: float
) -> lifecycle.Lease | None:
    """Claim; if a dead process on this host still holds the lease, wait for it to expire."""
    lease = lifecycle.claim_experiment(session, experiment_id, worker, lease_s)
    if lease is not None:
        return lease
    job = lifecycle.job_state(session, experiment_id)
    expires = job.lease_expires_at if job is not None else None
    owner_dead = job is not None and is_dead_local(job.lease_owner)
    session.rollback()
    if not owner_dead or expires is None:
        return None
    wait = (expires - datetime.now(UTC)).total_seconds() + 0.2
    log.info(
        "experiment %d: its previous worker died here; resuming in %.1f s", experiment_id, wait
    )
    time.sleep(min(max(wait, 0.0), lease_s + 1))
    return lifecycle.claim_experiment(session, experiment_id, worker, lease_s)


def is_dead_local(owner: str | None) -> bool:
    """Whether ``owner`` (a lease owner, ``host:pid``) is a process of this host that is gone."""
    host, _, pid = (owner or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _epochs_of(spec: dict[str, Any]) -> int:
    from rpg_core.spec import parse_spec, resolve_train

    return int(resolve_train(parse_spec(spec).train)["epochs"])


def _run_leased(
    settings: Settings,
    wcfg: WorkerSettings,
    sessions: sessionmaker[Session],
    session: Session,
    lease: lifecycle.Lease,
) -> str:
    exp_id = lease.experiment_id
    control = JobControl(
        sessions,
        exp_id,
        lease.token,
        lease_s=settings.lease_s,
        heartbeat_s=wcfg.heartbeat_s or settings.lease_s / 4,
        cancel_poll_s=wcfg.cancel_poll_s,
        progress_s=wcfg.progress_s,
    )
    log.info("experiment %d: attempt %d (token %d)", exp_id, lease.attempt, lease.token)
    limit = job_memory_limit(settings.max_job_memory_bytes, wcfg.job_memory_limit_bytes)
    with control:
        try:
            with memory_limit(limit):
                outcome = _train(settings, wcfg, session, lease, control)
        except Exception as err:  # noqa: BLE001 - any job error is recorded, never re-raised
            log.exception("experiment %d failed on attempt %d", exp_id, lease.attempt)
            if is_out_of_memory(err):
                # the frames of the failed step hold the model and the data: let them go first
                traceback.clear_frames(err.__traceback__)
                gc.collect()
                err = JobOutOfMemory(out_of_memory_message(limit))
            session.rollback()
            done = _on_error(settings, wcfg, session, lease, err, control.cancelled)
            if done in ("failed", "cancelled"):
                _after_trial(settings, session, exp_id)
            return done
    if control.lost:
        return "lost"
    if outcome is not None and outcome.pruned:  # the search's pruner stopped the trial
        session.rollback()
        if lifecycle.prune_experiment(
            session, exp_id, lease.token, outcome.result, files=outcome.files
        ):
            _after_trial(settings, session, exp_id)
            return "pruned"
        cancelled_now = lifecycle.mark_cancelled(session, exp_id, lease.token)
        return "cancelled" if cancelled_now else "lost"
    # a cancel that came while the last steps ran (OOD evaluation, outputs) still wins: a
    # cancelled run never ends succeeded
    cancelled = outcome is None or lifecycle.is_cancel_requested(session, exp_id)
    session.rollback()
    if cancelled:
        ok = lifecycle.mark_cancelled(session, exp_id, lease.token)
        _after_trial(settings, session, exp_id)
        return "cancelled" if ok else "lost"
    assert outcome is not None
    result, files = outcome.result, outcome.files
    if lifecycle.finish_experiment(session, exp_id, lease.token, result=result, files=files):
        _after_trial(settings, session, exp_id)
        return "succeeded"
    # refused: the lease was lost, or a cancel came after the check above (then it wins)
    return "cancelled" if lifecycle.mark_cancelled(session, exp_id, lease.token) else "lost"


def _after_trial(settings: Settings, session: Session, exp_id: int) -> None:
    """A search trial ended: its study asks for the next ones now (the reconciler would, later)."""
    from api import search

    try:
        search.after_trial(session, settings, exp_id)
    except Exception as err:  # noqa: BLE001 - the job's outcome is recorded; the tick retries
        log.warning("experiment %d: driving its study failed: %s", exp_id, err)
        session.rollback()


class _KeepModel:
    """Engine callback: keeps the run's datasets and trained model for the outputs (no reload,
    no rebuild from checkpoint)."""

    model: Any = None
    data: Any = None

    def on_datasets(self, data: Any) -> None:
        self.data = data

    def on_train_end(self, result: Any, model: Any) -> None:
        self.model = model


def _prune_source(settings: Settings, session: Session, spec: dict[str, Any]) -> Any:
    """A pruning job's source model: the .rpg file of the experiment ``prune.source`` names."""
    from rpg_core.exceptions import RPGConfigError
    from rpg_core.format import load_compact

    source = (spec.get("prune") or {}).get("source")
    if not isinstance(source, int):
        return None  # no pruning job, or a .rpg file name the engine reads from the data root
    record = stored.get_file(session, source, "model")
    key, sha256 = (record.path, record.sha256) if record is not None else (None, None)
    session.rollback()
    # from the store (a copy cached in this host's artifact dir when the store is remote)
    cache = Path(settings.artifact_dir) / "cache"
    path = local_copy(open_store(settings), key, cache, sha256) if key else None
    if path is None:
        raise RPGConfigError(
            f"prune.source: experiment {source} has no model file; prune a run that succeeded"
        )
    return load_compact(path)


def _check_memory(settings: Settings, spec: dict[str, Any]) -> None:
    """The API's memory estimate, checked again before anything is loaded (a spec submitted
    under a larger budget, or before the estimate existed): over budget, the job fails once."""
    from rpg_core.exceptions import RPGConfigError
    from rpg_core.spec import parse_spec
    from rpg_core.training.memory import memory_error

    over = memory_error(parse_spec(spec), settings.max_job_memory_bytes)
    if over is not None:
        raise RPGConfigError(f"{over[0]}: {over[1]}")


def _trial_reporter(settings: Settings, session: Session, exp_id: int) -> Any:
    """A search trial's reporter of evaluations to its Optuna trial (None: not a trial)."""
    from api import search

    try:
        return search.trial_reporter(session, settings, exp_id)
    except Exception as err:  # noqa: BLE001 - train without pruning rather than not at all
        log.warning("experiment %d: no intermediate values for its trial: %s", exp_id, err)
        session.rollback()
        return None


class _Trained(NamedTuple):
    result: ExperimentResult
    files: list[stored.FileRecord]
    pruned: bool = False  # a search's pruner stopped it: it ends ``pruned``, with its model


def _train(
    settings: Settings,
    wcfg: WorkerSettings,
    session: Session,
    lease: lifecycle.Lease,
    control: JobControl,
) -> _Trained | None:
    """Run (or resume) the training: its stored result and files; None when it was stopped.
    A trial a search's pruner stopped keeps its files too: its model as of the evaluation that
    pruned it downloads like any run's."""
    from rpg_core.training.experiment import (
        train_experiment,  # the one path of `rpg train`/`rpg sweep`
    )

    _check_memory(settings, lease.spec)
    store = open_store(settings)
    artifact_dir = Path(settings.artifact_dir)
    ckpt = checkpoint_dir(artifact_dir, lease.experiment_id)
    ckpt.mkdir(parents=True, exist_ok=True)
    fetch_checkpoint(store, artifact_dir, lease.experiment_id)  # the latest, from any host
    keep = _KeepModel()
    upload = CheckpointUpload(store, artifact_dir, lease.experiment_id)
    trial = _trial_reporter(settings, session, lease.experiment_id)
    result = train_experiment(
        lease.spec,
        # the upload first: a checkpoint is in the store before the epoch is reported
        callbacks=[
            upload,
            Reporter(control, _epochs_of(lease.spec)),
            keep,
            *([trial] if trial else []),
        ],
        similarity_images=wcfg.similarity_images,
        attempt=lease.attempt,
        checkpoint_dir=ckpt,
        data_root=settings.data_root,
        resume=True,
        step_interval_s=min(wcfg.progress_s, 1.0),
        source_model=_prune_source(settings, session, lease.spec),
        # a pruning method's dense network, trained once for every budget of a sweep (on
        # this host: a cache, not a stored file)
        dense_cache=artifact_dir / "dense",
    )
    pruned = (
        result.stopped
        and trial is not None
        and trial.pruned
        and not (control.cancelled or control.lost)
    )
    if not pruned and (result.stopped or control.lost):
        return None
    files = save_outputs(artifact_dir, lease.experiment_id, keep.model, keep.data, store)
    return _Trained(result, files, pruned=pruned)


def _without_credentials(settings: Settings, message: str) -> str:
    """``message`` without the artifact store's credentials (api.storage)."""
    try:
        return open_store(settings).redact(message)
    except Exception:  # noqa: BLE001 - a store that cannot even be built holds no credentials
        return message


def _on_error(
    settings: Settings,
    wcfg: WorkerSettings,
    session: Session,
    lease: lifecycle.Lease,
    err: Exception,
    cancelled: bool,
) -> str:
    """Record a job's error: cancel it, fail it (an error no retry can fix, or the last
    attempt) or queue it again (a transient error)."""
    exp_id, token = lease.experiment_id, lease.token
    message = redact(
        _without_credentials(settings, f"{type(err).__name__}: {err}"),
        data_root=settings.data_root,
        artifact_dir=settings.artifact_dir,
    )
    if cancelled or lifecycle.is_cancel_requested(session, exp_id):
        session.rollback()
        return "cancelled" if lifecycle.mark_cancelled(session, exp_id, token) else "lost"
    session.rollback()
    permanent = is_permanent(err)
    if permanent or lease.attempt >= wcfg.max_attempts:
        why = "; not retried: the same error would happen again" if permanent else ""
        detail = f"{message} (attempt {lease.attempt} of {wcfg.max_attempts}{why})"
        return "failed" if lifecycle.fail_experiment(session, exp_id, token, detail) else "lost"
    if not lifecycle.requeue(session, exp_id, token, message):
        # a cancel came in since the check above (or the lease is gone): never back in the queue
        return "cancelled" if lifecycle.mark_cancelled(session, exp_id, token) else "lost"
    lifecycle.dispatch_jobs(session, settings, [exp_id])
    return "requeued"
