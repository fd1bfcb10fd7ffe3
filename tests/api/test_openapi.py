"""The OpenAPI document says what the API does (errors, statuses, SSE, limits, auth, CORS)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import Settings

pytestmark = pytest.mark.isolated  # throwaway databases, no Redis or server process


def _doc(client: TestClient) -> dict[str, Any]:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    doc: dict[str, Any] = r.json()
    return doc


def test_error_bodies_as_they_are(client: TestClient) -> None:
    doc = _doc(client)
    schemas = doc["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    detail = schemas["Error"]["properties"]["detail"]["anyOf"]
    assert {"type": "string"} in detail
    assert schemas["FieldError"]["required"] == ["field", "message"]
    r = client.post("/api/experiments", json={"rpg": {"ring_size": -1}})
    assert r.status_code == 401 and isinstance(r.json()["detail"], str)


def test_every_status_a_route_returns(client: TestClient) -> None:
    paths = _doc(client)["paths"]

    def statuses(path: str, method: str) -> set[str]:
        return set(paths[path][method]["responses"])

    assert {"201", "400", "401", "413", "422", "503"} <= statuses("/api/experiments", "post")
    assert {"401", "404", "409", "422"} <= statuses("/api/experiments/{experiment_id}", "delete")
    assert {"404", "409"} <= statuses("/api/experiments/{experiment_id}/cancel", "post")
    assert {"400", "401", "413", "422"} <= statuses("/api/models/inspect", "post")
    assert {"404", "422"} <= statuses("/api/sweeps/{sweep_id}", "get")
    assert "401" not in statuses("/api/experiments", "get")  # public reads on this server
    assert paths["/api/experiments"]["get"]["security"][0] == {}
    assert "Retry-After" in paths["/api/experiments"]["get"]["responses"]["503"]["headers"]


def test_sse_yaml_and_private_routes(client: TestClient) -> None:
    doc = _doc(client)
    paths = doc["paths"]
    for path in ("/api/events", "/api/experiments/{experiment_id}/events"):
        assert list(paths[path]["get"]["responses"]["200"]["content"]) == ["text/event-stream"]
    body = paths["/api/experiments"]["post"]["requestBody"]["content"]
    assert {"application/json", "application/yaml"} <= set(body)
    assert not [p for p in paths if p.startswith("/ui/")]
    links = paths["/api/experiments"]["post"]["responses"]["201"]["links"]
    assert links and all(v["parameters"] == {"experiment_id": "$response.body#/id"}
                         for v in links.values())  # fmt: skip
    assert "CORS: off" in doc["info"]["description"]


def test_server_limits_in_the_schema(settings: Settings) -> None:
    s = settings.model_copy(update={"max_epochs": 7, "public_reads": False,
                                    "cors_origins": ["https://ui.example"]})  # fmt: skip
    with TestClient(create_app(s)) as c:
        doc = _doc(c)
    schemas = doc["components"]["schemas"]
    epochs = schemas["TrainSpec"]["properties"]["epochs"]["anyOf"][0]
    assert epochs["maximum"] == 7
    assert schemas["DataSpec"]["properties"]["dataset"]["pattern"].endswith("$")
    assert "resnet18" in schemas["ModelSpec"]["properties"]["arch"]["enum"]
    get = doc["paths"]["/api/experiments"]["get"]
    assert "401" in get["responses"] and {} not in get["security"]
    assert "https://ui.example" in doc["info"]["description"]


def test_405_lists_every_method_of_the_path(client: TestClient) -> None:
    r = client.request("OPTIONS", "/api/experiments")
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD, POST"
    r = client.put("/api/experiments/3")
    assert r.status_code == 405 and r.headers["allow"] == "DELETE, GET, HEAD"


def test_the_detail_types_the_result_with_the_contract(client: TestClient) -> None:
    schemas = _doc(client)["components"]["schemas"]
    result = schemas["ExperimentDetail"]["properties"]["result"]
    assert {"$ref": "#/components/schemas/ExperimentResult"} in result["anyOf"]
    fields = schemas["ExperimentResult"]["properties"]
    assert {"val_acc", "best_val_acc", "history", "params", "ood", "attempt"} <= set(fields)
    assert "required" not in schemas["ExperimentResult"]  # results stored before a field existed
    assert {"bin_edges", "fractions"} <= set(schemas["Similarity"]["properties"])
