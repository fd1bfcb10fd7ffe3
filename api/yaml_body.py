"""Request bodies in YAML: ``Content-Type: application/yaml`` on the spec and sweep routes.

The route class parses a YAML body with the one safe loader (:mod:`rpg_core.spec.safe_yaml`: no
aliases, bounded size and depth) and hands the validator the equivalent JSON, so YAML and JSON
bodies get the same checks and the same errors.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from email.message import Message
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute

from rpg_core.spec.safe_yaml import RPGYAMLError, loads

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


def is_yaml(content_type: str | None) -> bool:
    if not content_type:
        return False
    main = content_type.partition(";")[0].strip().lower()
    if main == "application/json":  # every JSON request: no header parsing (issue 27)
        return False
    msg = Message()
    msg["content-type"] = content_type
    return msg.get_content_type() in YAML_TYPES


def parse_yaml_body(raw: bytes, max_bytes: int, field: str | None = None) -> Any:
    """The YAML document in ``raw``, or a 422 naming ``field`` and saying why not. Without a
    ``field`` (a request body) the 422 names the document's field when the error has one
    (``train.epochs`` for a number out of bounds), else ``(body)``."""
    try:
        return loads(raw, max_bytes=max_bytes)
    except RPGYAMLError as err:
        name = field or err.field or "(body)"
        raise HTTPException(422, detail=[{"field": name, "message": str(err)}]) from None


class YamlBodyRoute(APIRoute):
    """An APIRoute whose JSON body may also come as YAML (``application/yaml``)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            if is_yaml(request.headers.get("content-type")):
                limit = request.app.state.settings.max_body_bytes
                data = parse_yaml_body(await request.body(), limit)
                request._body = json.dumps(data).encode()
                headers = [
                    (k, v) for k, v in request.scope["headers"] if k not in (b"content-type",)
                ]
                request.scope["headers"] = [*headers, (b"content-type", b"application/json")]
                request.__dict__.pop("_headers", None)
            return await handler(request)

        return route


def yaml_request_body(schema: str) -> dict[str, Any]:
    """``openapi_extra`` documenting the YAML alternative of a JSON body."""
    ref = {"$ref": f"#/components/schemas/{schema}"}
    return {"requestBody": {"content": {t: {"schema": ref} for t in YAML_TYPES[:1]}}}
