"""The service's checks on top of the spec's own validation (422 naming the field)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from fastapi import HTTPException

from rpg_core.spec import ExperimentSpec, resolve_train

from .settings import Settings

CONTROL = re.compile(r"[\x00-\x1f\x7f]")
TAG_QUERY_PATTERN = r"^[^\x00-\x1f\x7f]+$"


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(str(k), f"{path}.{k}" if path else str(k))
            yield from _strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _strings(v, f"{path}[{i}]")


def _text_errors(spec: ExperimentSpec, prefix: str) -> list[dict[str, str]]:
    """NUL anywhere, and control characters in tags (databases and logs cannot take them)."""
    errors = []
    for path, text in _strings(spec.model_dump(mode="json"), ""):
        bad = "\x00" in text or (path.startswith("tags") and CONTROL.search(text))
        if bad:
            errors.append(
                {"field": f"{prefix}{path}", "message": "control characters are not allowed"}
            )
    return errors


def limit_errors(
    spec: ExperimentSpec, settings: Settings, prefix: str = ""
) -> list[dict[str, str]]:
    """Each field of ``spec`` over a maximum of ``settings``, as {"field", "message"}."""
    errors = _text_errors(spec, prefix)
    rpg = spec.rpg
    if (
        rpg is not None
        and isinstance(rpg.ring_size, int)
        and rpg.ring_size > settings.max_ring_size
    ):
        errors.append(
            {
                "field": f"{prefix}rpg.ring_size",
                "message": f"at most {settings.max_ring_size} on this server",
            }
        )
    train = resolve_train(spec.train)
    if train["epochs"] > settings.max_epochs:
        errors.append(
            {
                "field": f"{prefix}train.epochs",
                "message": f"at most {settings.max_epochs} on this server",
            }
        )
    if train["batch_size"] > settings.max_batch_size:
        errors.append(
            {
                "field": f"{prefix}train.batch_size",
                "message": f"at most {settings.max_batch_size} on this server",
            }
        )
    return errors


def check_limits(spec: ExperimentSpec, settings: Settings) -> None:
    errors = limit_errors(spec, settings)
    if errors:
        raise HTTPException(422, detail=errors)
