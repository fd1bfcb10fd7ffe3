"""A job's status: the one owner of its names, its groups and its legal transitions.

The ORM column (``api.models.Experiment.status``), the schemas, the listing's ``?status=``
filter, the ``/metrics`` gauge, the lifecycle (``api.crud.lifecycle``, the only writer) and the
dashboard's JavaScript (served as data by :func:`page_data`, never copied) read it from here::

    queued --claim--> running --finish--> succeeded
      |                 |  \\--fail-----> failed
      |                 |  \\--prune----> pruned          (a search's pruner stopped it early)
      |                 |  \\--requeue--> queued          (a transient error; keeps its checkpoint)
      |                 \\--cancel--> cancelling --mark_cancelled / lease expired--> cancelled
      \\--cancel--> cancelled
    failed, cancelled --retry--> queued

``TRANSITIONS`` is that diagram as data; :func:`check_transition` is the one gate every status
change passes (it raises :class:`IllegalTransition`, a 409 at the API).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class JobStatus(StrEnum):
    """An experiment's status (a ``str``: it compares equal to its name and stores as one)."""

    queued = "queued"
    running = "running"
    cancelling = "cancelling"
    cancelled = "cancelled"
    succeeded = "succeeded"
    failed = "failed"
    pruned = "pruned"


STATUSES: tuple[JobStatus, ...] = tuple(JobStatus)
"""Every status, in the order of the diagram (the dashboard's filter lists them so)."""
FINISHED: frozenset[JobStatus] = frozenset(
    {JobStatus.cancelled, JobStatus.succeeded, JobStatus.failed, JobStatus.pruned}
)
"""Terminal: no worker runs it any more (a run can only be retried or deleted)."""
ACTIVE: frozenset[JobStatus] = frozenset(set(JobStatus) - FINISHED)
"""Not finished: queued, running or cancelling (the dashboard follows these)."""
LEASED: frozenset[JobStatus] = frozenset({JobStatus.running, JobStatus.cancelling})
"""A worker holds (or held) its lease: the fenced worker writes accept only these."""

_S = JobStatus
TRANSITIONS: dict[str, frozenset[JobStatus]] = {  # keyed by JobStatus (a str)
    _S.queued: frozenset({_S.running, _S.cancelled}),
    _S.running: frozenset(
        {_S.running, _S.succeeded, _S.failed, _S.queued, _S.cancelling, _S.pruned}
    ),
    # a cancelled run never ends succeeded: a run that finishes while cancelling ends cancelled
    _S.cancelling: frozenset({_S.cancelling, _S.cancelled, _S.failed}),
    _S.succeeded: frozenset(),
    _S.pruned: frozenset(),  # a pruned trial keeps its curve; it is never run again
    _S.failed: frozenset({_S.queued}),
    _S.cancelled: frozenset({_S.queued}),
}
CANCELLABLE: frozenset[JobStatus] = frozenset(
    s for s in STATUSES if TRANSITIONS[s] & {_S.cancelling, _S.cancelled} and s != _S.cancelling
)
"""A cancel changes them (queued -> cancelled, running -> cancelling)."""


class IllegalTransition(ValueError):
    """A status change ``TRANSITIONS`` does not allow."""

    def __init__(self, current: str, new: str) -> None:
        known = current in _S.__members__
        allowed = ", ".join(sorted(TRANSITIONS[_S(current)])) if known else ""
        super().__init__(
            f"a {current} run cannot become {new}"
            + (f" (a {current} run can become: {allowed})" if allowed else "")
        )
        self.current = current
        self.new = new


def check_transition(current: str, new: str) -> JobStatus:
    """``new`` as a :class:`JobStatus` when ``current -> new`` is in ``TRANSITIONS``; else
    :class:`IllegalTransition` (an unknown name on either side is illegal too)."""
    if current not in _S.__members__ or new not in _S.__members__:
        raise IllegalTransition(current, new)
    target = _S(new)
    if target not in TRANSITIONS[_S(current)]:
        raise IllegalTransition(current, new)
    return target


def page_data() -> dict[str, Any]:
    """What the dashboard's JavaScript knows of statuses (``common.js`` reads it from the page)."""
    return {
        "statuses": [s.value for s in STATUSES],
        "active": [s.value for s in STATUSES if s in ACTIVE],
        "finished": [s.value for s in STATUSES if s in FINISHED],
        "cancellable": [s.value for s in STATUSES if s in CANCELLABLE],
    }
