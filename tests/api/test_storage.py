"""The artifact store's two backends through one interface (api.storage), the S3 one against a
real S3 API server process (moto's standalone server on 127.0.0.1)."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.redact import redact_secrets
from api.settings import Settings
from api.storage import ArtifactStore, LocalStore, S3Store, StoreConfig, StoreUnavailable

from ..s3server import ACCESS_KEY, SECRET_KEY, MotoServer, free_port


def _s3(server: MotoServer, bucket: str, tmp: Path, **over: object) -> S3Store:
    cfg = StoreConfig(
        url=f"s3://{bucket}/pre/fix",
        local_dir=tmp,
        endpoint_url=server.url,
        max_attempts=1,
        connect_timeout_s=1,
    )
    return S3Store(cfg)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    if request.param == "local":
        yield LocalStore(tmp_path / "artifacts")
        return
    server: MotoServer = request.getfixturevalue("s3_server")
    yield _s3(server, request.getfixturevalue("s3_bucket"), tmp_path)


def test_put_list_open_size_delete(store: ArtifactStore, tmp_path: Path) -> None:
    payload = os.urandom(3 * (1 << 20) + 17)  # more than one streamed chunk
    src = tmp_path / "model.rpg"
    src.write_bytes(payload)
    key = "experiments/7/model.rpg"
    assert not store.exists(key) and store.size(key) is None
    store.put_file(key, src)
    store.put_file("experiments/7/checkpoints/last.safetensors", src)
    store.put_file("experiments/70/model.rpg", src)
    assert store.exists(key) and store.size(key) == len(payload)
    for folder in ("experiments/7/", "experiments/7"):  # a folder: never experiments/70
        assert store.list(folder) == [
            "experiments/7/checkpoints/last.safetensors",
            "experiments/7/model.rpg",
        ]
    assert len(store.list("")) == 3
    with store.open(key) as body:
        chunks = list(iter(lambda: body.read(1 << 20), b""))
    assert len(chunks) == 4 and b"".join(chunks) == payload
    store.get_file(key, tmp_path / "copy" / "m.rpg")
    assert (tmp_path / "copy" / "m.rpg").read_bytes() == payload
    with pytest.raises(FileNotFoundError):
        store.open("experiments/8/model.rpg")
    store.delete(key)
    store.delete(key)  # a missing key is no error
    assert not store.exists(key)
    assert store.list("experiments/7/") == ["experiments/7/checkpoints/last.safetensors"]


def test_keys_that_leave_the_store_are_refused(store: ArtifactStore, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("x")
    for bad in ("../secret", "/etc/passwd", "experiments/../../secret"):
        if isinstance(store, LocalStore):
            assert store.size(bad) is None and not store.exists(bad)
        else:
            with pytest.raises(ValueError, match="leaves the store"):
                store.size(bad)
        with pytest.raises(ValueError, match="leaves the"):
            store.put_file(bad, tmp_path / "secret")


class _Fails(io.RawIOBase):
    """A reader that breaks after ``good`` bytes (a worker dying mid-upload)."""

    def __init__(self, good: int) -> None:
        self.left = good

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        if self.left <= 0:
            raise OSError("the disk went away")
        n = min(len(b), self.left)
        b[:n] = b"x" * n
        self.left -= n
        return n


def test_an_interrupted_multipart_upload_leaves_nothing_listed(
    s3_server: MotoServer, s3_bucket: str, tmp_path: Path
) -> None:
    from boto3.s3.transfer import TransferConfig

    store = _s3(s3_server, s3_bucket, tmp_path)
    store.transfer = TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20)
    with pytest.raises(StoreUnavailable, match="failed to write experiments/1/model.rpg"):
        store.put_fileobj("experiments/1/model.rpg", io.BufferedReader(_Fails(12 << 20)))
    assert store.list("experiments/") == []
    assert not store.exists("experiments/1/model.rpg")
    uploads = store.client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])
    assert uploads == []  # aborted, not left half-done


def test_presigned_url_reads_the_object_without_credentials(
    s3_server: MotoServer, s3_bucket: str, tmp_path: Path
) -> None:
    store = _s3(s3_server, s3_bucket, tmp_path)
    (tmp_path / "f").write_bytes(b"rpg-bytes")
    store.put_file("experiments/3/model.rpg", tmp_path / "f")
    url = store.presign("experiments/3/model.rpg", 60)
    assert url is not None and SECRET_KEY not in url
    assert httpx.get(url).content == b"rpg-bytes"


def test_an_outage_names_the_store_and_never_the_credentials(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Down:  # a store whose server is not there (stopped): connections are refused
        url = f"http://127.0.0.1:{free_port()}"

    down, bucket = Down(), "rpg-gone"
    store = _s3(down, bucket, tmp_path)  # type: ignore[arg-type]
    (tmp_path / "f").write_bytes(b"x")
    caplog.set_level(logging.DEBUG, logger="api")
    with pytest.raises(StoreUnavailable) as err:
        store.put_file("experiments/9/model.rpg", tmp_path / "f")
    message = str(err.value)
    assert f"the artifact store s3://{bucket}/pre/fix at {down.url}" in message
    assert "failed to write experiments/9/model.rpg" in message
    for secret in (SECRET_KEY, ACCESS_KEY):
        assert secret not in message and secret not in caplog.text
    with pytest.raises(StoreUnavailable, match="failed to look up"):
        store.exists("experiments/9/model.rpg")


def test_redact_secrets_and_the_settings() -> None:
    msg = f"denied for {ACCESS_KEY} signed with {SECRET_KEY} ({SECRET_KEY[:10]})"
    out = redact_secrets(msg, [ACCESS_KEY, SECRET_KEY, "", "ab"])
    assert ACCESS_KEY not in out and SECRET_KEY not in out and out.count("<redacted>") == 2
    assert SECRET_KEY[:10] in out  # only whole secrets are replaced
    local = Settings(artifact_url="file:///srv/art", _env_file=None)  # type: ignore[call-arg]
    assert local.artifact_dir == Path("/srv/art") and local.artifact_url == ""
    assert Settings(artifact_url="/srv/x").artifact_dir == Path("/srv/x")
    assert Settings(artifact_url="s3://my-bucket/runs").artifact_url == "s3://my-bucket/runs"
    for bad, says in (("gs://b/p", "gs:// is not a store"), ("s3://B_/p", "not an S3 bucket")):
        with pytest.raises(ValueError, match=says):
            Settings(artifact_url=bad)
