"""JSON errors that name the field: {"detail": [{"field": "rpg.ring_size", "message": "..."}]}."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc

from rpg_core.spec import ExperimentSpec, field_hint
from rpg_core.spec.sweep import SweepSpec

from .crud.errors import ConflictError, CursorError
from .status import IllegalTransition

log = logging.getLogger(__name__)

# pydantic names the member of a union that failed (rpg.ring_size.constrained-int): not a field
_UNION_TAG = re.compile(
    r"^(constrained-\w+|function-\w+\[.*\]|tagged-union\[.*\]|int|float|str|bool|"
    r"(list|dict|literal|tuple)\[.*\])$"
)


def field_error(field: str, message: str, status_code: int = 422) -> HTTPException:
    """An HTTPException whose body names ``field``, like the validation errors."""
    return HTTPException(status_code, detail=[{"field": field, "message": message}])


def _field_of(loc: Sequence[Any]) -> str:
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    while parts and isinstance(parts[-1], str) and _UNION_TAG.match(parts[-1]):
        parts.pop()
    return ".".join(str(p) for p in parts) or "(body)"


def _merged(errors: Sequence[Any]) -> list[dict[str, str]]:
    """One entry per field; a union's alternatives are joined with "or"."""
    by_field: dict[str, list[str]] = {}
    for e in errors:
        messages = by_field.setdefault(_field_of(e.get("loc", ())), [])
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        if e.get("type") == "extra_forbidden":  # a misspelled spec field: name the closest
            loc = tuple(e.get("loc", ()))
            if loc and loc[0] == "body":  # an experiment's or a sweep's body
                msg += field_hint(loc[1:], ExperimentSpec) or field_hint(loc[1:], SweepSpec)
        if msg not in messages:
            messages.append(msg)
    return [{"field": f, "message": " or ".join(m)} for f, m in by_field.items()]


async def _validation_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": _merged(exc.errors())}, status_code=422)


async def _conflict_handler(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=409)


async def _cursor_handler(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": [{"field": "cursor", "message": str(exc)}]}, status_code=422)


async def _unavailable_handler(request: Request, exc: Exception) -> JSONResponse:
    """No database connection in time (pool exhausted) or the database is down: a 503 the
    client can retry, never a 500."""
    log.warning("%s %s: database unavailable: %s", request.method, request.url.path, exc)
    retry = str(request.app.state.settings.retry_after_s)
    return JSONResponse(
        {"detail": "the database is busy or unreachable; retry later"},
        status_code=503,
        headers={"Retry-After": retry},
    )


def _documented_methods(app: Any, path: str) -> set[str]:
    """Methods the OpenAPI document lists for ``path`` (templates matched segment by segment)."""
    parts = path.rstrip("/").split("/")
    out: set[str] = set()
    for template, ops in app.openapi().get("paths", {}).items():
        tparts = template.split("/")
        if len(tparts) == len(parts) and all(
            t == p or (t.startswith("{") and t.endswith("}") and p)
            for t, p in zip(tparts, parts, strict=True)
        ):
            out |= {m.upper() for m in ops}
    return out


async def _method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
    """405 whose Allow lists every method of the path (Starlette names one route's only)."""
    allowed = _documented_methods(request.app, request.url.path)
    if not allowed:
        headers = getattr(exc, "headers", None) or {}
        allowed = {m.strip() for m in headers.get("Allow", "").split(",") if m.strip()}
    if "GET" in allowed:
        allowed.add("HEAD")
    return JSONResponse(
        {"detail": "Method Not Allowed"},
        status_code=405,
        headers={"Allow": ", ".join(sorted(allowed))},
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(405, _method_not_allowed)
    app.add_exception_handler(sa_exc.TimeoutError, _unavailable_handler)
    app.add_exception_handler(sa_exc.OperationalError, _unavailable_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(ConflictError, _conflict_handler)
    app.add_exception_handler(IllegalTransition, _conflict_handler)
    app.add_exception_handler(CursorError, _cursor_handler)
