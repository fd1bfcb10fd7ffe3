"""A running job's link to the database: heartbeat thread, cached cancel check, throttled progress.

:class:`JobControl` keeps the lease alive from a background thread (so a long evaluation or a
slow data loader never lets it lapse) and answers ``should_stop`` from the training loop at most
every ``cancel_poll_s`` with one indexed read. Every write is fenced by the lease token: once a
write or a heartbeat finds the lease gone, ``lost`` is set and the job stops writing.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from api.crud import lifecycle

log = logging.getLogger(__name__)


class JobControl:
    """Heartbeats, cancel checks and progress/metric writes of one leased experiment."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        experiment_id: int,
        token: int,
        *,
        lease_s: float,
        heartbeat_s: float,
        cancel_poll_s: float = 0.5,
        progress_s: float = 1.0,
    ) -> None:
        self.sessions = sessions
        self.experiment_id = experiment_id
        self.token = token
        self.lease_s = lease_s
        self.heartbeat_s = heartbeat_s
        self.cancel_poll_s = cancel_poll_s
        self.progress_s = progress_s
        self.lost = False
        self.cancelled = False
        self._session = sessions()
        self._last_cancel_check = -float("inf")
        self._last_progress = -float("inf")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="rpg-heartbeat", daemon=True)

    # --- lifecycle
    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.heartbeat_s + 10)
        self._session.close()

    def __enter__(self) -> JobControl:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _beat(self) -> None:
        with self.sessions() as session:
            while not self._stop.wait(self.heartbeat_s):
                try:
                    state = lifecycle.heartbeat(
                        session, self.experiment_id, self.token, self.lease_s
                    )
                except Exception as err:  # noqa: BLE001 - a DB hiccup must not kill the job
                    log.warning("heartbeat of experiment %d failed: %s", self.experiment_id, err)
                    session.rollback()
                    continue
                if not state.alive:
                    log.warning("experiment %d: lease lost; stopping", self.experiment_id)
                    self.lost = True
                    return
                self.cancelled = self.cancelled or state.cancel_requested

    # --- called from the training loop
    def should_stop(self) -> bool:
        if self.lost or self.cancelled:
            return True
        now = time.monotonic()
        if now - self._last_cancel_check >= self.cancel_poll_s:
            self._last_cancel_check = now
            try:
                self.cancelled = lifecycle.is_cancel_requested(self._session, self.experiment_id)
            except Exception as err:  # noqa: BLE001 - check again at the next step
                log.warning("cancel check of experiment %d failed: %s", self.experiment_id, err)
                self._session.rollback()
            else:
                self._session.rollback()  # end the read transaction (fresh snapshot next time)
        return self.lost or self.cancelled

    def progress(self, fraction: float, epoch: int | None, *, force: bool = False) -> None:
        now = time.monotonic()
        if self.lost or (not force and now - self._last_progress < self.progress_s):
            return
        self._last_progress = now
        if not lifecycle.report_progress(
            self._session, self.experiment_id, self.token, fraction, epoch
        ):
            self.lost = True

    def metrics(self, epoch: int, values: dict[str, float]) -> None:
        if self.lost:
            return
        if not lifecycle.record_metrics(
            self._session, self.experiment_id, self.token, epoch, values
        ):
            self.lost = True


def _numeric(metrics: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in metrics.items()
        if k != "epoch" and isinstance(v, int | float) and not isinstance(v, bool)
    }


class Reporter:
    """The training engine's callback: progress, per-epoch metrics, cooperative stop."""

    def __init__(self, control: JobControl, epochs: int) -> None:
        self.control = control
        self.epochs = max(int(epochs), 1)

    def on_step(self, step: int, total: int, metrics: dict[str, Any]) -> None:
        epoch = metrics.get("epoch")
        self.control.progress(step / max(total, 1), int(epoch) if epoch else None)

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        self.control.metrics(epoch, _numeric(metrics))
        self.control.progress(epoch / self.epochs, epoch, force=True)

    def on_resume(self, history: list[dict[str, float]]) -> None:
        # A previous attempt may have died after its checkpoint but before reporting that epoch.
        for record in history:
            self.control.metrics(int(record["epoch"]), _numeric(record))

    def should_stop(self) -> bool:
        return self.control.should_stop()
