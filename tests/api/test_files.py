"""Model download (checksums, ETag), path traversal, and .rpg inspection of uploads."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pickle
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from api import crud
from api.models import StoredFile
from api.settings import Settings

from ..s3server import ACCESS_KEY, SECRET_KEY, free_port
from .conftest import BACKENDS, run_to_end, store_file, submit

HAVE_COMPACT = importlib.util.find_spec("rpg_core.format") is not None


def _with_model(
    client: TestClient, auth: dict[str, str], session: Session, settings: Settings, payload: bytes
) -> int:
    exp_id = submit(client, auth)
    record = store_file(settings, crud.artifact_relpath(exp_id), payload)
    run_to_end(session, exp_id, {"val_acc": 0.5}, [record])
    return exp_id


@BACKENDS
def test_download_has_checksum_headers(
    client: TestClient, auth: dict[str, str], session: Session, settings: Settings
) -> None:
    payload = os.urandom(2_500_000)  # more than one streamed chunk
    exp_id = _with_model(client, auth, session, settings, payload)
    r = client.get(f"/api/experiments/{exp_id}/model")
    digest = hashlib.sha256(payload).hexdigest()
    assert r.status_code == 200 and r.content == payload
    assert r.headers["x-checksum-sha256"] == digest
    assert r.headers["etag"] == f'"{digest}"'
    assert r.headers["content-length"] == str(len(payload))
    assert "attachment" in r.headers["content-disposition"]
    assert f"experiment-{exp_id}.rpg" in r.headers["content-disposition"]
    again = client.get(f"/api/experiments/{exp_id}/model", headers={"If-None-Match": f'"{digest}"'})
    assert again.status_code == 304 and again.content == b""
    assert client.get(f"/api/experiments/{exp_id + 1000}/model").status_code == 404
    assert client.get(f"/api/experiments/{submit(client, auth)}/model").status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/api/experiments/..%2F..%2Fetc%2Fpasswd/model",
        "/api/experiments/%2e%2e%2f%2e%2e/model",
        "/api/experiments/%252e%252e%252f/model",
        "/api/experiments/....//....//etc/model",
        "/api/experiments//etc/passwd/model",
        "/api/experiments/1;rm -rf/model",
        "/api/experiments/1%23frag/model",
        "/api/experiments/-1/model",
        "/api/experiments/99999999999999999999/model",
        "/api/experiments/1.5/model",
        "/api/experiments/%00/model",
    ],
)
def test_traversal_in_ids_is_4xx(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert 400 <= r.status_code < 500, (path, r.status_code)
    assert b"root:" not in r.content


@BACKENDS
def test_stored_path_outside_artifact_dir_is_not_served(
    client: TestClient, auth: dict[str, str], session: Session, settings: Settings, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not serve")
    exp_id = _with_model(client, auth, session, settings, b"abc")
    for bad in ("../secret.txt", str(secret), "experiments/../../secret.txt"):
        session.execute(
            update(StoredFile).where(StoredFile.experiment_id == exp_id).values(path=bad)
        )
        session.commit()
        r = client.get(f"/api/experiments/{exp_id}/model")
        assert r.status_code == 404 and b"do not serve" not in r.content


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the store's test, not the DB's
@pytest.mark.parametrize("settings", ["s3"], indirect=True)
def test_s3_downloads_presigned_and_outage(
    app_and_client: tuple[Any, TestClient],
    auth: dict[str, str],
    session: Session,
    settings: Settings,
) -> None:
    """A presigned URL (307) reads the object without the API; a store that is down answers
    503 naming the store, never its credentials."""
    app, client = app_and_client
    exp_id = _with_model(client, auth, session, settings, b"rpg" * 1000)
    # the dashboard's model info reads the header of a copy cached by the record's sha256
    real = _with_model(
        client, auth, session, settings, _tiny_rpg(settings.artifact_dir / "t.rpg").read_bytes()
    )
    info = client.get(f"/ui/api/runs/{real}/model-info").json()
    sha = crud.get_file(session, real, "model").sha256  # type: ignore[union-attr]
    assert info["sha256"] == sha and info["rings"]
    assert (settings.artifact_dir / "cache" / "sha256" / f"{sha}.rpg").is_file()
    app.state.settings = settings.model_copy(update={"s3_presign_downloads": True})
    r = client.get(f"/api/experiments/{exp_id}/model", follow_redirects=False)
    assert r.status_code == 307 and SECRET_KEY not in r.headers["location"]
    assert httpx.get(r.headers["location"]).content == b"rpg" * 1000
    app.state.settings = settings.model_copy(
        update={"s3_endpoint_url": f"http://127.0.0.1:{free_port()}"}
    )
    for path in (f"/api/experiments/{exp_id}/model", f"/ui/api/runs/{exp_id}/model-info"):
        r = client.get(path)
        assert r.status_code == 503, (path, r.text)
        assert "the artifact store s3://" in r.json()["detail"]
        assert SECRET_KEY not in r.text and ACCESS_KEY not in r.text
    # an error stored with a credential in it (an older worker, a library's message) is shown
    # without it
    failed = submit(client, auth)
    run_to_end(session, failed, fail=f"denied: key {ACCESS_KEY} secret {SECRET_KEY}")
    shown = client.get(f"/api/experiments/{failed}").json()["error"]
    assert shown == "denied: key <redacted> secret <redacted>"


def _tiny_rpg(path: Path) -> Path:
    from rpg_core.format import save_compact
    from rpg_core.models import create_model

    model = create_model(
        {"model": {"arch": "resnet18", "width": 0.125}, "rpg": {"ring_size": 0.05, "seed": 7}}
    )
    save_compact(model, path)
    return path


@pytest.mark.skipif(not HAVE_COMPACT, reason="rpg_core.format is not there yet")
def test_inspect_valid_and_invalid_uploads(
    client: TestClient, auth: dict[str, str], tmp_path: Path
) -> None:
    data = _tiny_rpg(tmp_path / "m.rpg").read_bytes()
    headers = {**auth, "content-type": "application/octet-stream"}
    r = client.post("/api/models/inspect", content=data, headers=headers)
    assert r.status_code == 200, r.text
    info: dict[str, Any] = r.json()
    assert isinstance(info, dict) and info
    assert "resnet18" in r.text
    r = client.post("/api/models/inspect", content=data[: len(data) // 2], headers=headers)
    assert r.status_code == 422 and "valid .rpg" in r.json()["detail"]
    assert client.post("/api/models/inspect", content=b"", headers=headers).status_code == 400
    assert client.post("/api/models/inspect", content=data).status_code == 401


class _Boom:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("touch /tmp/rpg-api-test-pwned",))


@pytest.mark.skipif(not HAVE_COMPACT, reason="rpg_core.format is not there yet")
def test_pickle_upload_is_never_unpickled(client: TestClient, auth: dict[str, str]) -> None:
    marker = Path("/tmp/rpg-api-test-pwned")
    marker.unlink(missing_ok=True)
    r = client.post("/api/models/inspect", content=pickle.dumps(_Boom()), headers=auth)
    assert r.status_code == 422
    assert not marker.exists()


def test_oversized_bodies_get_413(
    app_and_client: tuple[Any, TestClient], auth: dict[str, str], session: Session
) -> None:
    app, client = app_and_client
    limit = app.state.settings.max_body_bytes
    big = b"{" + b" " * limit + b"}"
    r = client.post(
        "/api/experiments", content=big, headers={**auth, "content-type": "application/json"}
    )
    assert r.status_code == 413

    def chunks() -> Any:  # no Content-Length: the middleware counts the streamed bytes
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    r = client.post(
        "/api/experiments", content=chunks(), headers={**auth, "content-type": "application/json"}
    )
    assert r.status_code == 413
    app.state.settings.max_upload_bytes = 1000  # the middleware's own limit is fixed at start
    r = client.post("/api/models/inspect", content=(b"x" * 64 for _ in range(100)), headers=auth)
    assert r.status_code == 413
    assert crud.list_experiments(session, crud.ListFilter())[0] == []


@pytest.mark.skipif(not HAVE_COMPACT, reason="rpg_core.compact is not there yet")
def test_an_upload_asking_for_8192_pixel_inputs_is_422(
    client: TestClient, auth: dict[str, str], tmp_path: Path
) -> None:
    """Issue 23: inference metadata is checked when the header is read (checksum still ok)."""
    import json

    from rpg_core.format import save_compact
    from rpg_core.models import create_model

    model = create_model({"model": {"arch": "resnet18", "width": 0.125}, "rpg": None})
    info = {"image_size": 32, "in_channels": 3, "mean": [0.5] * 3, "std": [0.25] * 3}
    save_compact(model, tmp_path / "m.rpg", inference=info)
    raw = (tmp_path / "m.rpg").read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    header["__metadata__"]["inference"] = json.dumps({**info, "image_size": 8192})
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    crafted = len(text).to_bytes(8, "little") + text + raw[8 + n :]
    headers = {**auth, "content-type": "application/octet-stream"}
    r = client.post("/api/models/inspect?filename=big.rpg", content=crafted, headers=headers)
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == (
        "not a valid .rpg file: big.rpg: metadata: inference.image_size must be an int in "
        "1..1024 (the largest data.image_size a model is trained at), got 8192"
    )
