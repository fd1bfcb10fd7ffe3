"""Which job errors a retry can fix (and :func:`redact`: messages without the server's paths).

Permanent errors (a bad spec, missing or malformed data, a model that cannot be built, a
deterministic training failure) would happen again on every attempt: the job fails at once with
the message. Everything else (I/O, the database, the broker, CUDA hiccups, unknown errors) is
transient and retried up to ``max_attempts``.
"""

from __future__ import annotations

from api.redact import redact
from rpg_core.exceptions import RPGConfigError, RPGDataError, RPGFormatError, RPGTrainingError

__all__ = ["PERMANENT", "JobOutOfMemory", "is_permanent", "redact"]


class JobOutOfMemory(Exception):
    """A job's host allocation failed under its memory limit (worker.limits): the same job
    needs the same memory, so it is not retried."""


PERMANENT: tuple[type[BaseException], ...] = (
    JobOutOfMemory,
    RPGConfigError,
    RPGDataError,
    RPGFormatError,
    RPGTrainingError,
    ValueError,  # pydantic's ValidationError included
    TypeError,
    IndexError,  # e.g. labels beyond model.num_classes
    KeyError,
    AttributeError,
    NotImplementedError,
    ZeroDivisionError,
    AssertionError,
    RecursionError,
)


def is_permanent(err: BaseException) -> bool:
    """True when retrying the same job cannot succeed (anything unknown is transient)."""
    return isinstance(err, PERMANENT)
