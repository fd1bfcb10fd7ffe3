"""Messages for clients without the server's folders: ``/srv/data/x`` is shown as
``<data root>/x``, a temporary upload as the name the client knows."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def redact(message: str, **roots: Path | str | None) -> str:
    """``message`` with each root folder (its absolute and resolved forms) shown as ``<name>``:
    ``redact(msg, data_root=...)`` writes ``<data root>`` for the server's data folder."""
    labels: dict[str, str] = {}
    for name, root in roots.items():
        if root is None or str(root) == "":
            continue
        p = Path(root)
        forms = {str(p.absolute())}
        try:
            forms.add(str(p.resolve()))
        except OSError:
            pass
        for form in forms:
            if form not in ("", "/"):
                labels.setdefault(form, f"<{name.replace('_', ' ')}>")
    if not labels:
        return message
    # one pass, longest first: a label is never rewritten by a shorter folder name
    pattern = re.compile("|".join(re.escape(f) for f in sorted(labels, key=len, reverse=True)))
    return pattern.sub(lambda m: labels[m.group(0)], message)


def redact_values(value: Any, old: str, new: str) -> Any:
    """``value`` (JSON-like) with ``old`` replaced by ``new`` in every string."""
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, dict):
        return {k: redact_values(v, old, new) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_values(v, old, new) for v in value]
    return value


def redact_secrets(message: str, secrets: Iterable[str]) -> str:
    """``message`` with every secret (a credential: access key, secret key, token) written as
    ``<redacted>``; secrets shorter than 4 characters are left alone (they would match
    anything)."""
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        message = message.replace(secret, "<redacted>")
    return message
