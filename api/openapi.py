"""The OpenAPI document as the API really behaves (FastAPI's default is close, not exact).

* errors: ``{"detail": [{"field", "message"}]}`` (validation) or ``{"detail": "..."}``;
* every status a route can return: 401 (token), 404 (ids), 409 (state), 413 (bodies), 400
  (empty upload), 422, and 503 + Retry-After (overload, database unavailable);
* SSE routes as ``text/event-stream``, ``/metrics`` as Prometheus text;
* reads need no token when ``public_reads`` is on (security ``[{}, bearer]``);
* the server's limits (epochs, batch size, ring size) and the spec's patterns in the schemas;
* links from a created experiment or sweep to the routes that take its id (stateful clients);
* CORS as configured, in the description. The dashboard's ``/ui/*`` routes are private (not
  in the schema): they serve the pages and may change with them.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from rpg_core.spec import DATASET_RE, MAX_RING_SIZE

from .settings import Settings

ERROR = {"$ref": "#/components/schemas/Error"}
SCHEMAS: dict[str, Any] = {
    "FieldError": {
        "title": "FieldError",
        "type": "object",
        "required": ["field", "message"],
        "properties": {
            "field": {"type": "string", "examples": ["rpg.ring_size"]},
            "message": {"type": "string"},
        },
    },
    "Error": {
        "title": "Error",
        "type": "object",
        "required": ["detail"],
        "properties": {
            "detail": {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}},
                ]
            }
        },
    },
}
SSE_EVENT = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": ["summary", "status", "progress", "metric", "end"]},
        "data": {"type": "string", "contentMediaType": "application/json"},
    },
}
WHY = {
    "400": "The body cannot be read (not UTF-8 JSON/YAML, or an empty upload)",
    "401": "Missing or invalid API token",
    "404": "No such experiment, sweep or study",
    "409": "Not possible in the run's current state",
    "413": "Request body over the server's limit",
    "422": "Invalid input; each error names its field",
    "429": "Too many failed token attempts from this client; retry after Retry-After seconds",
    "503": "Overloaded or the database is unavailable; retry after Retry-After seconds",
}
RETRY_AFTER = {"Retry-After": {"description": "seconds", "schema": {"type": "integer"}}}
STATE_ROUTES = ("/cancel", "/retry")
LATER = ("/model", "/similarity")  # exist once the run has succeeded: no link from its POST


def _error(status: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": WHY[status],
        "content": {"application/json": {"schema": ERROR}},
    }
    if status in ("503", "429"):
        out["headers"] = RETRY_AFTER
    return out


def _statuses(path: str, method: str, op: dict[str, Any], settings: Settings) -> list[str]:
    out = ["503"]
    if op.get("parameters") or "requestBody" in op:
        out.append("422")
    if path.startswith("/api/") or path == "/metrics":
        write = method != "get"
        if write or not settings.public_reads:
            out += ["401", "429"]  # 429: the client's failed tokens (auth_max_failures)
    if "{experiment_id}" in path or "{sweep_id}" in path or "{study_id}" in path:
        out.append("404")
    if method == "delete" or path.endswith(STATE_ROUTES):
        out.append("409")
    if "requestBody" in op:
        out += ["400", "413"]  # 400: a body that is not text in the declared encoding
    if path.endswith("/models/inspect"):
        out += ["400", "422"]
    return out


def _constrain(schemas: dict[str, Any], settings: Settings) -> None:
    """The server's own limits and the validators' patterns, in the request schemas."""
    train = schemas["TrainSpec"]["properties"]
    for name, limit in (("epochs", settings.max_epochs), ("batch_size", settings.max_batch_size)):
        for alt in train[name].get("anyOf", [train[name]]):
            if alt.get("type") == "integer":
                alt["maximum"] = min(limit, alt.get("maximum", limit))
    ring = schemas["RPGSpec"]["properties"]["ring_size"]
    ring.pop("anyOf", None)
    ring["anyOf"] = [
        {"type": "integer", "minimum": 1, "maximum": min(settings.max_ring_size, MAX_RING_SIZE)},
        {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    ]
    dataset = schemas["DataSpec"]["properties"]["dataset"]
    dataset["pattern"] = DATASET_RE.pattern.replace("\\Z", "$")
    from rpg_core.models import list_models

    schemas["ModelSpec"]["properties"]["arch"]["enum"] = list(list_models())


def _links(paths: dict[str, Any]) -> None:
    """Links: what a client can do next with the id a POST returned (stateful testing too)."""
    targets = {
        "/api/experiments": ("experiment_id", "/api/experiments/{experiment_id}"),
        "/api/sweeps": ("sweep_id", "/api/sweeps/{sweep_id}"),
    }
    for source, (param, prefix) in targets.items():
        links: dict[str, Any] = {}
        for path, ops in paths.items():
            if not path.startswith(prefix) or path.endswith(LATER):
                continue
            for method, op in ops.items():
                name = f"{method.capitalize()}{op['operationId']}"
                links[name] = {
                    "operationId": op["operationId"],
                    "parameters": {param: "$response.body#/id"},
                }
        paths[source]["post"]["responses"]["201"]["links"] = links


def build(app: FastAPI, settings: Settings) -> dict[str, Any]:
    cors = (
        f"CORS: allowed for {', '.join(settings.cors_origins)} (GET, POST, DELETE; headers "
        "Authorization, Content-Type; OPTIONS answers preflight requests)."
        if settings.cors_origins
        else "CORS: off (no Access-Control-* headers; OPTIONS answers 405)."
    )
    reads = (
        "Reads need no token on this server."
        if settings.public_reads
        else "Reads need a token as writes do."
    )
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=f"{app.description}\n\n{reads} {cors} Overload: 503 with Retry-After.",
        routes=app.routes,
    )
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas.update(SCHEMAS)
    _constrain(schemas, settings)
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            responses = op.setdefault("responses", {})
            for status in _statuses(path, method, op, settings):
                responses[status] = _error(status)
            if path.endswith("/events") and "200" in responses:
                responses["200"] = {
                    "description": "Server-Sent Events; each event's data is one JSON object",
                    "content": {"text/event-stream": {"schema": SSE_EVENT}},
                }
            if method == "get" and settings.public_reads and op.get("security"):
                op["security"] = [{}, *op["security"]]
    _links(doc["paths"])
    return doc


def install(app: FastAPI, settings: Settings) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build(app, settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
