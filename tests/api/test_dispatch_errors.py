"""A dispatch that fails is visible: logged (a broker outage as a warning, anything else as an
error with its traceback), the run stays queued and undispatched for the reconciler, and the
submit says so."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from api import crud
from api.dispatch import TRAIN_TASK, dispatch
from api.settings import Settings
from studio.app import create_app

from .conftest import SPEC


def _submit(settings: Settings, token: str) -> tuple[int, bool]:
    with TestClient(create_app(settings)) as c:
        r = c.post("/api/experiments", json=SPEC, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["dispatched"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_misconfigured_broker_is_logged_as_an_error_and_the_run_stays_queued(
    settings: Settings, token: str, session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    s = settings.model_copy(update={"broker_url": "nosuch://broker"})
    with caplog.at_level(logging.WARNING, logger="api.dispatch"):
        exp_id, dispatched = _submit(s, token)
    assert dispatched is False
    (record,) = [r for r in caplog.records if r.name == "api.dispatch"]
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "1 experiment(s) stay queued" in record.getMessage()
    exp = crud.get_experiment(session, exp_id)
    assert exp is not None and exp.status == "queued" and exp.dispatched_at is None


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_broker_that_is_down_is_a_warning(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    s = settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    with caplog.at_level(logging.WARNING, logger="api.dispatch"):
        assert dispatch(s, [7, 8]) == []
    (record,) = [r for r in caplog.records if r.name == "api.dispatch"]
    assert record.levelno == logging.WARNING and "unreachable" in record.getMessage()
    assert "2 experiment(s) stay queued" in record.getMessage()


def test_the_task_name_is_defined_once() -> None:
    """The worker registers its task under the name the API sends."""
    from worker.tasks import train_experiment

    assert train_experiment.name == TRAIN_TASK


def test_first_sends_from_many_threads_at_once_all_get_a_sender() -> None:
    """Requests run in threads: eight first dispatches at once (a fresh process, celery not yet
    imported) all get the one sender. Without the lock, celery's lazy package answered some of
    them "cannot import name 'Celery'" and their runs stayed queued."""
    code = textwrap.dedent(
        """
        import threading
        from api.dispatch import sender
        got, errors = [], []
        def send():
            try:
                got.append(sender("redis://127.0.0.1:6379/9", "q"))
            except Exception as err:
                errors.append(repr(err))
        threads = [threading.Thread(target=send) for _ in range(8)]
        for t in threads: t.start()
        for t in threads: t.join()
        assert not errors, errors
        assert len(got) == 8 and len({id(app) for app in got}) == 1
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
