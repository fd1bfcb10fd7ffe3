"""Cooperative stop outside the training steps: a ``should_stop`` callable passed down.

The engine asks its callbacks' ``should_stop()`` before every training step
(:mod:`rpg_core.training.epoch`). The other long loops of a run take the same question as a
``should_stop`` argument (a callable returning True to stop; the engine passes one that asks the
callbacks) and check it at least once a second: data generation (``synthetic-pose``,
``synthetic-scenes``, scene folders, MPII crops: per sample or per chunk), evaluation and OOD
evaluation (per batch and per shifted chunk), pruning (per block). A check that says stop raises
:class:`Stopped`; the engine turns it into a ``stopped`` result. A worker's ``should_stop`` is
:meth:`worker.control.JobControl.should_stop` (one indexed read every ``cancel_poll_s``), so
checking per sample is cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

StopCheck = Callable[[], bool]
T = TypeVar("T")

__all__ = ["StopCheck", "Stopped", "callbacks_stop", "check_stop", "checked"]


class Stopped(Exception):
    """A ``should_stop`` check said stop (a cancel, a lost lease): the work was abandoned."""


def check_stop(should_stop: StopCheck | None) -> None:
    """Raise :class:`Stopped` when ``should_stop`` (if any) says so."""
    if should_stop is not None and should_stop():
        raise Stopped


def callbacks_stop(callbacks: Sequence[Any]) -> StopCheck:
    """The ``should_stop`` of a run: True when any callback's ``should_stop()`` is."""

    def should_stop() -> bool:
        return any(bool(getattr(cb, "should_stop", lambda: False)()) for cb in callbacks)

    return should_stop


def checked(items: Iterable[T], should_stop: StopCheck | None) -> Iterator[T]:
    """``items``, with ``should_stop`` checked before each one is drawn (batches of an
    evaluation pass: the check falls between two batches)."""
    for item in items:
        check_stop(should_stop)
        yield item
