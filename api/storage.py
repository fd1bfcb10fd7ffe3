"""The artifact store (``RPG_ARTIFACT_URL``): where models, the checkpoints a resume needs and
every other stored file live, addressed by their stored relative key, never a request value.

Two backends behind one interface (:class:`ArtifactStore`): a local directory (the default,
``<home>/artifacts``; several hosts share it only through a network filesystem) and an S3 bucket
(``s3://bucket/prefix``; AWS, or an S3-compatible server such as MinIO or Ceph at
``RPG_S3_ENDPOINT_URL``) through boto3, so a worker on another host needs only the database, the
broker and the store. Keys are the same in both (``experiments/<id>/model.rpg``, ``.../
checkpoints/last.safetensors``): a ``stored_files.path`` means the same object in either.

Writes are atomic for readers: :meth:`ArtifactStore.put_file` returns only once the whole
object is in place (a rename in the directory; a completed single or multipart upload in S3, an
interrupted multipart upload aborted), and the caller records the file in the database after
that. A store that cannot be reached raises :class:`StoreUnavailable`, whose message names the
store (never its credentials: boto3 reads them from its usual chain, ``AWS_ACCESS_KEY_ID`` and
friends, and :meth:`ArtifactStore.redact` takes them out of any message).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import urlsplit, urlunsplit

from .redact import redact_secrets

if TYPE_CHECKING:
    from .settings import Settings

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20  # what a streamed download reads and sends at a time


class StoreUnavailable(ConnectionError):
    """The artifact store could not be reached or refused a request (a transient error: the
    job that needed it is queued again). The message names the store and the key, never a
    credential."""


@dataclass(frozen=True)
class StoreConfig:
    """Which store, from the one Settings (:meth:`of`)."""

    url: str  # "" (the local directory) or s3://bucket/prefix
    local_dir: Path  # the artifact dir: the store itself, or this host's scratch and cache
    endpoint_url: str = ""  # an S3-compatible server (MinIO, Ceph); empty: AWS
    region: str = ""  # empty: boto3's own (AWS_DEFAULT_REGION, ~/.aws/config), else us-east-1
    max_attempts: int = 3  # boto3's retries of one request (standard mode) before an error
    connect_timeout_s: float = 5.0  # a store that does not answer fails the write this soon

    @classmethod
    def of(cls, settings: Settings) -> StoreConfig:
        return cls(
            url=settings.artifact_url if is_s3_url(settings.artifact_url) else "",
            local_dir=Path(settings.artifact_dir),
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            max_attempts=settings.s3_max_attempts,
            connect_timeout_s=settings.s3_connect_timeout_s,
        )


def is_s3_url(url: str) -> bool:
    return url.strip().lower().startswith("s3://")


def split_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")`` (no slashes around)."""
    parts = urlsplit(url.strip())
    return parts.netloc, parts.path.strip("/")


def without_userinfo(url: str) -> str:
    """``url`` with any ``user:password@`` taken out (for messages)."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class ArtifactStore(Protocol):
    """Stored files by relative key (``experiments/7/model.rpg``)."""

    name: str  # what messages call the store: its folder or s3://bucket/prefix (endpoint)
    remote: bool  # False: keys are files under ``local_dir`` (no copy to make)

    def put_file(self, key: str, source: Path) -> None:
        """Store the local file ``source`` as ``key``: readers see all of it or nothing."""

    def open(self, key: str) -> IO[bytes]:
        """A streaming reader of ``key`` (FileNotFoundError when it is not there)."""

    def size(self, key: str) -> int | None:
        """The stored object's size in bytes; None when it is not there."""

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str) -> list[str]:
        """The keys under the folder ``prefix`` (``experiments/7/``; empty: all), sorted."""

    def delete(self, key: str) -> None:
        """Remove ``key`` (a missing one is no error)."""

    def get_file(self, key: str, target: Path) -> None:
        """Download ``key`` to ``target`` (atomically: a temp file renamed)."""

    def local_path(self, key: str) -> Path | None:
        """The file itself, where the store is this host's directory; None for a remote one."""

    def presign(self, key: str, expires_s: int) -> str | None:
        """A URL that reads ``key`` without credentials for ``expires_s``; None: not offered."""

    def redact(self, message: str) -> str:
        """``message`` without the store's credentials."""


# ------------------------------------------------------------------------------ local directory
def resolve_inside(artifact_dir: Path, relative: str) -> Path | None:
    """``artifact_dir/relative`` resolved, or None when it would leave the artifact dir."""
    root = Path(artifact_dir).resolve()
    if not relative or "\x00" in relative or Path(relative).is_absolute():
        return None
    path = (root / relative).resolve()
    return path if path.is_relative_to(root) and path != root else None


def _safe_key(key: str) -> str:
    """``key`` when it stays inside the store (no ``..``, no absolute path), else ValueError."""
    if resolve_inside(Path("/store"), key) is None or ".." in Path(key).parts:
        raise ValueError(f"artifact key {key!r} leaves the store")
    return key.strip("/")


def _copy_atomic(source: IO[bytes], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(source, out, CHUNK_BYTES)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class LocalStore:
    """The artifact directory itself (the default)."""

    remote = False

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.name = f"the artifact directory {self.root}"

    def _path(self, key: str) -> Path:
        path = resolve_inside(self.root, key)
        if path is None:
            raise ValueError(f"artifact key {key!r} leaves the artifact directory")
        return path

    def put_file(self, key: str, source: Path) -> None:
        target = self._path(key)
        if Path(source).resolve() == target:
            return  # written in place (atomically, by its writer)
        with Path(source).open("rb") as src:
            _copy_atomic(src, target)

    def open(self, key: str) -> IO[bytes]:
        return self._path(key).open("rb")

    def size(self, key: str) -> int | None:
        path = resolve_inside(self.root, key)
        return path.stat().st_size if path is not None and path.is_file() else None

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def list(self, prefix: str) -> list[str]:
        root = self.root.resolve()
        base = resolve_inside(root, prefix.strip("/")) if prefix.strip("/") else root
        if base is None or not base.exists():
            return []
        found = [base] if base.is_file() else [p for p in base.rglob("*") if p.is_file()]
        keys = (p.relative_to(root).as_posix() for p in found)
        return sorted(k for k in keys if not Path(k).name.endswith(".part"))

    def delete(self, key: str) -> None:
        path = resolve_inside(self.root, key)
        if path is None:
            log.warning("not removing %r: outside the artifact dir", key)
            return
        try:
            path.unlink(missing_ok=True)
            root = self.root.resolve()
            parent = path.parent
            while parent != root and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()  # its now-empty folders (checkpoints/, then the experiment's)
                parent = parent.parent
        except OSError as err:
            log.warning("could not remove %s: %s", path, err)

    def get_file(self, key: str, target: Path) -> None:
        with self.open(key) as src:
            _copy_atomic(src, Path(target))

    def local_path(self, key: str) -> Path | None:
        return resolve_inside(self.root, key)

    def presign(self, key: str, expires_s: int) -> str | None:
        return None

    def redact(self, message: str) -> str:
        return message


# ------------------------------------------------------------------------------------------ S3
class _Body:
    """A file-like reader over a boto3 ``StreamingBody`` whose read errors name the store."""

    def __init__(self, store: S3Store, key: str, body: Any) -> None:
        self._store, self._key, self._body = store, key, body

    def read(self, n: int = -1) -> bytes:
        try:
            data: bytes = self._body.read(None if n is None or n < 0 else n)
            return data
        except Exception as err:  # noqa: BLE001 - any transport error of the body
            raise self._store.unavailable("read", self._key, err) from None

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(CHUNK_BYTES):
            yield chunk

    def close(self) -> None:
        self._body.close()

    def __enter__(self) -> _Body:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class S3Store:
    """An S3 bucket (``s3://bucket/prefix``) through boto3: AWS, MinIO, Ceph, moto."""

    remote = True

    def __init__(self, cfg: StoreConfig) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.bucket, self.prefix = split_s3_url(cfg.url)
        if not self.bucket:
            raise ValueError(f"RPG_ARTIFACT_URL {cfg.url!r}: name the bucket, s3://BUCKET/prefix")
        endpoint = without_userinfo(cfg.endpoint_url)
        where = f" at {endpoint}" if endpoint else ""
        place = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        self.name = place + where
        self.local_dir = cfg.local_dir
        session = boto3.session.Session()
        self.client = session.client(
            "s3",
            endpoint_url=cfg.endpoint_url or None,
            region_name=cfg.region or session.region_name or "us-east-1",
            config=Config(
                connect_timeout=cfg.connect_timeout_s,
                read_timeout=60,
                retries={"max_attempts": cfg.max_attempts, "mode": "standard"},
                s3={"addressing_style": "path"} if cfg.endpoint_url else None,
            ),
        )
        creds = session.get_credentials()
        frozen = creds.get_frozen_credentials() if creds is not None else None
        self._secrets = tuple(
            s for s in (frozen or ()) if isinstance(s, str) and len(s) >= 4
        )  # access key, secret key, session token: never in a message
        # multipart above 64 MiB, in 16 MiB parts: a failed part aborts the whole upload
        self.transfer = TransferConfig(
            multipart_threshold=64 * 1024**2, multipart_chunksize=16 * 1024**2
        )

    def _key(self, key: str) -> str:
        key = _safe_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _relative(self, full: str) -> str:
        return full[len(self.prefix) + 1 :] if self.prefix else full

    def redact(self, message: str) -> str:
        return redact_secrets(message, self._secrets)

    def unavailable(self, op: str, key: str, err: BaseException) -> StoreUnavailable:
        reason = self.redact(f"{type(err).__name__}: {err}")
        return StoreUnavailable(f"the artifact store {self.name} failed to {op} {key}: {reason}")

    def _missing(self, err: Exception) -> bool:
        from botocore.exceptions import ClientError

        if not isinstance(err, ClientError):
            return False
        code = str(err.response.get("Error", {}).get("Code", ""))
        return code in ("404", "NoSuchKey", "NotFound")

    def put_file(self, key: str, source: Path) -> None:
        full = self._key(key)  # ValueError when it leaves the store
        try:
            # one PUT, or a multipart upload completed before this returns (s3transfer aborts
            # it when a part fails): the key never names half an object
            self.client.upload_file(str(source), self.bucket, full, Config=self.transfer)
        except Exception as err:  # noqa: BLE001 - botocore and s3transfer errors alike
            raise self.unavailable("write", key, err) from None
        log.info("stored %s in %s", key, self.name)

    def put_fileobj(self, key: str, source: IO[bytes]) -> None:
        """Like :meth:`put_file`, from an open reader (a failed read aborts the upload)."""
        full = self._key(key)  # ValueError when it leaves the store
        try:
            self.client.upload_fileobj(source, self.bucket, full, Config=self.transfer)
        except Exception as err:  # noqa: BLE001
            raise self.unavailable("write", key, err) from None

    def open(self, key: str) -> IO[bytes]:
        full = self._key(key)  # ValueError when it leaves the store
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=full)
        except Exception as err:  # noqa: BLE001
            if self._missing(err):
                raise FileNotFoundError(f"{key} is not in {self.name}") from None
            raise self.unavailable("read", key, err) from None
        return cast(IO[bytes], _Body(self, key, obj["Body"]))

    def size(self, key: str) -> int | None:
        full = self._key(key)  # ValueError when it leaves the store
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=full)
        except Exception as err:  # noqa: BLE001
            if self._missing(err):
                return None
            raise self.unavailable("look up", key, err) from None
        return int(head["ContentLength"])

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def list(self, prefix: str) -> list[str]:
        # a folder, as in the directory: experiments/7 never lists experiments/70
        full = self._key(prefix) if prefix.strip("/") else self.prefix
        full = full + "/" if full else full
        keys: list[str] = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full
            )
            for page in pages:
                keys.extend(self._relative(o["Key"]) for o in page.get("Contents", []))
        except Exception as err:  # noqa: BLE001
            raise self.unavailable("list", prefix, err) from None
        return sorted(keys)

    def delete(self, key: str) -> None:
        full = self._key(key)  # ValueError when it leaves the store
        try:
            self.client.delete_object(Bucket=self.bucket, Key=full)
        except Exception as err:  # noqa: BLE001
            raise self.unavailable("delete", key, err) from None

    def get_file(self, key: str, target: Path) -> None:
        with self.open(key) as src:
            _copy_atomic(src, Path(target))

    def local_path(self, key: str) -> Path | None:
        return None

    def presign(self, key: str, expires_s: int) -> str | None:
        full = self._key(key)  # ValueError when it leaves the store
        try:
            url: str = self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": full},
                ExpiresIn=int(expires_s),
            )
        except Exception as err:  # noqa: BLE001
            raise self.unavailable("sign a URL for", key, err) from None
        return url


# ------------------------------------------------------------------------------ the one store
@lru_cache(maxsize=8)
def _store(cfg: StoreConfig) -> ArtifactStore:
    return S3Store(cfg) if cfg.url else LocalStore(cfg.local_dir)


def open_store(settings: Settings) -> ArtifactStore:
    """The store ``settings`` name (one per configuration and process: boto3's client is
    thread-safe and keeps its connections)."""
    return _store(StoreConfig.of(settings))


def local_copy(
    store: ArtifactStore, key: str, cache_dir: Path, sha256: str | None = None
) -> Path | None:
    """A local file holding ``key``: the file itself in a local store, else a copy under
    ``cache_dir`` (scratch: anything there may be deleted). With ``sha256`` (the record's) the
    copy is named by it, so a rerun's new file is never served from an old copy, and checked
    after the download. None: no such object."""
    path = store.local_path(key)
    if path is not None or not store.remote:
        return path if path is not None and path.is_file() else None
    try:
        size = store.size(key)
    except ValueError:  # a key that leaves the store
        return None
    if size is None:
        return None
    if sha256 is not None and re.fullmatch(r"[0-9a-f]{64}", sha256):
        target: Path | None = Path(cache_dir) / "sha256" / f"{sha256}{Path(key).suffix}"
    else:
        target = resolve_inside(Path(cache_dir), key)
    if target is None:
        return None
    if not target.is_file() or target.stat().st_size != size:
        store.get_file(key, target)
        if sha256 is not None and _sha256(target) != sha256:
            target.unlink(missing_ok=True)
            raise StoreUnavailable(
                f"the artifact store {store.name} holds {key} with other bytes than its record "
                "(sha256 differs): a write that did not finish, or another deployment's file"
            )
    return target


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK_BYTES), b""):
            h.update(chunk)
    return h.hexdigest()


def remove_files(store: ArtifactStore, keys: Iterable[str]) -> None:
    """Delete stored files (and, in a directory, their now-empty folders); missing ones are
    ignored."""
    for key in keys:
        try:
            store.delete(key)
        except ValueError:
            log.warning("not removing %r: outside the artifact store", key)
