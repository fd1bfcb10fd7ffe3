"""Which job errors a retry can fix, and job error messages without the server's paths.

Permanent errors (a bad spec, missing or malformed data, a model that cannot be built, a
deterministic training failure) would happen again on every attempt: the job fails at once with
the message. Everything else (I/O, the database, the broker, CUDA hiccups, unknown errors) is
transient and retried up to ``max_attempts``.
"""

from __future__ import annotations

from pathlib import Path

from rpg_core.exceptions import RPGConfigError, RPGDataError, RPGFormatError, RPGTrainingError

PERMANENT: tuple[type[BaseException], ...] = (
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


def redact(message: str, **roots: Path | str | None) -> str:
    """``message`` with each root folder (absolute and as configured) shown as ``<name>``:
    ``redact(msg, data_root=...)`` writes ``<data root>`` for the server's data folder."""
    pairs: list[tuple[str, str]] = []
    for name, root in roots.items():
        if root is None or str(root) in ("", "."):
            continue
        label = f"<{name.replace('_', ' ')}>"
        p = Path(root)
        candidates = {str(p), str(p.absolute())}
        try:
            candidates.add(str(p.resolve()))
        except OSError:
            pass
        pairs += [(c, label) for c in candidates if c not in ("", ".", "/")]
    for text, label in sorted(pairs, key=lambda t: -len(t[0])):
        message = message.replace(text, label)
    return message
