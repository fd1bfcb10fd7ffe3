"""Security, leaks family: private servers show nothing without a token, and no answer names
the server's folders (temp files, the data root).

Before the fix ``/metrics`` showed experiment counts with public reads off, a successful inspect
returned the server's temp path and its 422s named the temp file.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from api.settings import Settings
from studio.app import create_app

from .conftest import run_to_end, submit
from .test_files import _tiny_rpg

pytestmark = pytest.mark.isolated  # throwaway databases, no Redis or server process


@pytest.fixture
def private_client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update={"public_reads": False}))) as c:
        yield c


def test_metrics_need_a_token_when_reads_do(
    private_client: TestClient, auth: dict[str, str]
) -> None:
    submit(private_client, auth)
    r = private_client.get("/metrics")
    assert r.status_code == 401 and "rpg_experiments" not in r.text
    r = private_client.get("/metrics", headers=auth)
    assert r.status_code == 200 and 'rpg_experiments{status="queued"} 1.0' in r.text


def test_metrics_stay_public_with_public_reads(client: TestClient) -> None:
    assert client.get("/metrics").status_code == 200


def test_private_dashboard_json_needs_a_token(private_client: TestClient) -> None:
    for url in ("/ui/api/runs", "/ui/figures/power-law"):
        assert private_client.get(url).status_code == 401, url


def _no_temp_path(text: str) -> None:
    assert tempfile.gettempdir() not in text
    assert "/tmp" not in text


def test_inspect_names_the_upload_not_the_temp_file(
    client: TestClient, auth: dict[str, str], tmp_path: Path
) -> None:
    data = _tiny_rpg(tmp_path / "m.rpg").read_bytes()
    headers = {**auth, "content-type": "application/octet-stream"}
    ok = client.post("/api/models/inspect", content=data, headers=headers)
    assert ok.status_code == 200
    _no_temp_path(ok.text)
    assert ok.json()["path"] == "upload.rpg"
    for broken in (data[: len(data) // 2], data[:100], b"RPG" + data[3:200]):
        r = client.post("/api/models/inspect", content=broken, headers=headers)
        assert r.status_code == 422
        _no_temp_path(r.text)
        assert "tmp" not in r.text  # not even the temp file's basename (tmpab12cd.rpg)
        assert r.json()["detail"].startswith("not a valid .rpg file: upload.rpg: "), r.text


def test_inspect_errors_name_the_uploaded_files_name(
    client: TestClient, auth: dict[str, str], tmp_path: Path
) -> None:
    """Issue 23: errors named the server's temp file (tmpXXXX.rpg), not the upload."""
    data = _tiny_rpg(tmp_path / "m.rpg").read_bytes()
    headers = {**auth, "content-type": "application/octet-stream"}
    url = "/api/models/inspect?filename=resnet18 (v2).rpg"
    ok = client.post(url, content=data, headers=headers)
    assert ok.status_code == 200 and ok.json()["path"] == "resnet18 (v2).rpg"
    r = client.post(url, content=data[:100], headers=headers)
    assert r.status_code == 422
    assert r.json()["detail"].startswith("not a valid .rpg file: resnet18 (v2).rpg: the file is")
    for bad in ("../etc/passwd", "a/b.rpg", "x\nrpg", "", "a" * 256):
        r = client.post("/api/models/inspect", params={"filename": bad}, content=data, headers=headers)  # fmt: skip
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == "filename", (bad, r.text)


def test_experiment_errors_do_not_show_the_servers_folders(
    client: TestClient, auth: dict[str, str], session: Session, settings: Settings
) -> None:
    exp_id = submit(client, auth)
    root = Path(settings.data_root).resolve()
    run_to_end(session, exp_id, fail=f"RPGDataError: {root}/pets must hold train/ and val/")
    error = client.get(f"/api/experiments/{exp_id}").json()["error"]
    assert error == "RPGDataError: <data root>/pets must hold train/ and val/"
