"""Messages for clients without the server's folders: ``/srv/data/x`` is shown as
``<data root>/x``, a temporary upload as the name the client knows."""

from __future__ import annotations

from pathlib import Path
from typing import Any


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


def redact_values(value: Any, old: str, new: str) -> Any:
    """``value`` (JSON-like) with ``old`` replaced by ``new`` in every string."""
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, dict):
        return {k: redact_values(v, old, new) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_values(v, old, new) for v in value]
    return value
