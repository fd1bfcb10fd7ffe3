"""Security, YAML family: every YAML the service reads goes through rpg_core.spec.safe_yaml.

Before the fix, a 420-byte "billion laughs" body made /ui/api/parse-spec answer hundreds of MB
and a self-referencing alias gave a 500.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.settings import Settings
from studio.app import create_app

pytestmark = pytest.mark.isolated  # throwaway databases, no Redis or server process


def laughs(levels: int, width: int = 9) -> bytes:
    """A "billion laughs" document: ``width ** levels`` strings from a few hundred bytes."""
    lines = ["l0: &l0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return ("\n".join(lines) + "\n").encode()


HOSTILE = {
    "billion laughs": laughs(5),
    "self-referencing list": b"a: &a [*a]\n",
    "self-referencing mapping": b"a: &a {b: *a}\n",
    "merge key": b"b: &b {x: 1}\nc: {<<: *b}\n",
    "deep nesting": b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "python tag": b"a: !!python/object/apply:os.system ['true']\n",
    "binary tag": b"a: !!binary /w==\n",
    "NaN": b"a: .nan\n",
    "complex key": b"? [1]\n: x\n",
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_parse_spec_refuses_hostile_yaml(client: TestClient, name: str) -> None:
    r = client.post("/ui/api/parse-spec", content=HOSTILE[name])
    assert r.status_code == 422, (name, r.status_code, r.text[:200])
    [err] = r.json()["detail"]
    assert err["field"] == "spec" and err["message"]
    assert len(r.content) < 1000


def test_parse_spec_says_why(client: TestClient) -> None:
    r = client.post("/ui/api/parse-spec", content=b"a: &a [*a]\n")
    assert "aliases are not allowed" in r.json()["detail"][0]["message"]
    r = client.post("/ui/api/parse-spec", content=b"a: " + b"[" * 100 + b"]" * 100)
    assert "deeper than" in r.json()["detail"][0]["message"]


def test_parse_spec_still_parses_specs(client: TestClient) -> None:
    text = b"name: x\nrpg: {ring_size: 1e3}\ntrain: {weight_decay: 5e-4, epochs: 2}\ntags: [a]\n"
    r = client.post("/ui/api/parse-spec", content=text)
    assert r.status_code == 200
    assert r.json() == {
        "name": "x",
        "rpg": {"ring_size": 1000.0},
        "train": {"weight_decay": 0.0005, "epochs": 2},
        "tags": ["a"],
    }


def test_parse_spec_is_size_and_rate_limited(settings: Settings) -> None:
    s = settings.model_copy(
        update={"parse_spec_max_bytes": 1000, "parse_spec_rate": 0.5, "parse_spec_burst": 3}
    )
    with TestClient(create_app(s)) as c:
        r = c.post("/ui/api/parse-spec", content=b"a: " + b"x" * 2000)
        assert r.status_code == 413
        codes = [c.post("/ui/api/parse-spec", content=b"a: 1").status_code for _ in range(4)]
        assert codes[:2] == [200, 200] and codes[-1] == 429
        r = c.post("/ui/api/parse-spec", content=b"a: 1")
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


def test_parse_spec_needs_a_token_when_reads_do(settings: Settings, auth: dict[str, str]) -> None:
    with TestClient(create_app(settings.model_copy(update={"public_reads": False}))) as c:
        assert c.post("/ui/api/parse-spec", content=b"a: 1").status_code == 401
        assert c.post("/ui/api/parse-spec", content=b"a: 1", headers=auth).status_code == 200


YAML_SPEC = b"""# a spec as a YAML body
name: yaml-spec
model: {arch: resnet18, width: 0.25}
rpg: {ring_size: 1000}
data: {dataset: digits}
train: {epochs: 2, weight_decay: 5e-4}
"""


@pytest.mark.parametrize("ctype", ["application/yaml", "application/x-yaml; charset=utf-8"])
def test_api_accepts_yaml_spec_bodies(client: TestClient, auth: dict[str, str], ctype: str) -> None:
    r = client.post("/api/experiments", content=YAML_SPEC, headers={**auth, "Content-Type": ctype})
    assert r.status_code == 201, r.text
    spec = client.get(f"/api/experiments/{r.json()['id']}").json()["spec"]
    assert spec["name"] == "yaml-spec" and spec["train"]["weight_decay"] == 0.0005


def test_api_accepts_yaml_sweep_bodies(client: TestClient, auth: dict[str, str]) -> None:
    body = b"name: ys\nbase: {data: {dataset: digits}, train: {epochs: 1}}\n"
    body += b"grid:\n  rpg.ring_size: [100, 200]\n"
    r = client.post(
        "/api/sweeps", content=body, headers={**auth, "Content-Type": "application/yaml"}
    )
    assert r.status_code == 201, r.text
    assert len(r.json()["experiment_ids"]) == 2


@pytest.mark.parametrize("path", ["/api/experiments", "/api/sweeps"])
@pytest.mark.parametrize("name", ["billion laughs", "self-referencing list", "deep nesting"])
def test_api_refuses_hostile_yaml_bodies(
    client: TestClient, auth: dict[str, str], path: str, name: str
) -> None:
    headers = {**auth, "Content-Type": "application/yaml"}
    r = client.post(path, content=HOSTILE[name], headers=headers)
    assert r.status_code == 422, r.text[:300]
    assert r.json()["detail"][0]["field"] == "(body)"
    assert client.get("/api/experiments").json()["items"] == []


def test_yaml_body_errors_name_the_field(client: TestClient, auth: dict[str, str]) -> None:
    headers = {**auth, "Content-Type": "application/yaml"}
    r = client.post("/api/experiments", content=b"rpg: {ring_size: -1}\n", headers=headers)
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "rpg.ring_size"
    r = client.post("/api/experiments", content=b"name: [x\n", headers=headers)
    assert r.status_code == 422 and "line 2" in r.json()["detail"][0]["message"]


def test_yaml_body_over_the_body_limit_is_413(
    client: TestClient, auth: dict[str, str], settings: Settings
) -> None:
    big: Any = b"tags: [" + b"x, " * (settings.max_body_bytes // 3 + 10) + b"]\n"
    headers = {**auth, "Content-Type": "application/yaml"}
    assert client.post("/api/experiments", content=big, headers=headers).status_code == 413


# issue 23, item 5: integers past Python's 4,300-digit limit, or huge hex and sexagesimal ones,
# answered 500 (int() raised ValueError, or json.dumps of the result did)
BIG_NUMBERS = {
    "5,000 decimal digits": b"1" * 5000,
    "hex": b"0x" + b"f" * 5000,
    "sexagesimal": b"1:" * 3000 + b"1",
    "hex past 64 bits": b"0x" + b"f" * 40,
    "float of 200 digits": b"1" + b"0" * 200 + b".5",
}


@pytest.mark.parametrize("name", list(BIG_NUMBERS))
def test_parse_spec_refuses_huge_numbers(client: TestClient, name: str) -> None:
    r = client.post("/ui/api/parse-spec", content=b"name: x\nseed: " + BIG_NUMBERS[name] + b"\n")
    assert r.status_code == 422, (name, r.status_code, r.text[:200])
    [err] = r.json()["detail"]
    assert err["field"] == "spec" and err["message"].startswith("seed (line 2): ")
    assert "at most 100 characters" in err["message"] and len(r.content) < 1000


@pytest.mark.parametrize("name", list(BIG_NUMBERS))
def test_api_refuses_huge_yaml_numbers_naming_the_field(
    client: TestClient, auth: dict[str, str], name: str
) -> None:
    headers = {**auth, "Content-Type": "application/yaml"}
    number = BIG_NUMBERS[name]
    spec = b"name: big\ndata: {dataset: digits}\ntrain:\n  epochs: " + number + b"\n"
    r = client.post("/api/experiments", content=spec, headers=headers)
    assert r.status_code == 422, r.text[:300]
    [err] = r.json()["detail"]
    assert err["field"] == "train.epochs" and "(line 4)" in err["message"]
    assert "integers at most 9,223,372,036,854,775,807" in err["message"]
    sweep = b"name: s\nbase: {data: {dataset: digits}}\ngrid:\n  rpg.ring_size: [100, " + number
    r = client.post("/api/sweeps", content=sweep + b"]\n", headers=headers)
    assert r.status_code == 422, r.text[:300]
    assert r.json()["detail"][0]["field"] == "grid.rpg.ring_size[1]"
    assert client.get("/api/experiments").json()["items"] == []


@pytest.mark.parametrize(
    ("content_type", "yaml"),
    [
        ("application/json", False),
        ("application/json; charset=utf-8", False),
        ("Application/JSON", False),
        (None, False),
        ("application/yaml", True),
        ("application/x-yaml; charset=utf-8", True),
        ("TEXT/YAML", True),
        ("text/plain", False),
    ],
)
def test_a_body_is_yaml_only_when_its_content_type_says_so(
    content_type: str | None, yaml: bool
) -> None:
    from api.yaml_body import is_yaml

    assert is_yaml(content_type) is yaml
