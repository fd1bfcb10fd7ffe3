"""Files: download an experiment's .rpg model; inspect an uploaded .rpg without unpickling it."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from typing import IO, Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from .. import crud
from ..deps import ExperimentId, ReadAuth, SessionDep, SettingsDep, WriteAuth
from ..middleware import BodyTooLarge
from ..redact import redact_values
from ..status import JobStatus
from ..storage import CHUNK_BYTES, StoreUnavailable, open_store

log = logging.getLogger(__name__)
router = APIRouter(tags=["files"])
INSPECT_PATH = "/api/models/inspect"


@router.get(
    "/experiments/{experiment_id}/model",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}},
        304: {},
        307: {"description": "s3_presign_downloads: the object's presigned URL (Location)"},
        404: {},
        503: {"description": "the artifact store cannot be reached"},
    },
)
def download_model(
    experiment_id: ExperimentId,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    _auth: ReadAuth,
) -> Response:
    """The experiment's .rpg file; ETag and X-Checksum-SHA256 carry its sha256. Streamed from
    the artifact store in chunks (never whole in memory), or, with ``s3_presign_downloads``, a
    307 to a presigned URL of the object."""
    record = crud.get_file(session, experiment_id, "model")
    session.rollback()  # the stream may outlast the request's transaction
    store = open_store(settings)
    try:
        size = store.size(record.path) if record is not None else None
    except ValueError:
        size = None  # a stored path that leaves the store
    except StoreUnavailable as err:
        raise HTTPException(503, detail=str(err)) from None
    if record is None or size is None:
        exp = crud.get_experiment(session, experiment_id)
        if exp is None:
            raise HTTPException(404, detail=f"experiment {experiment_id} not found")
        if exp.status != JobStatus.succeeded:
            raise HTTPException(
                404,
                detail=f"experiment {experiment_id} has no model yet: it is {exp.status}, and a "
                "model is stored when its run succeeds",
            )
        raise HTTPException(404, detail=f"experiment {experiment_id} has no stored model")
    etag = f'"{record.sha256}"'
    headers = {"ETag": etag, "X-Checksum-SHA256": record.sha256, "Cache-Control": "no-cache"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    filename = f"experiment-{experiment_id}.rpg"
    path = store.local_path(record.path)
    if path is not None:
        return FileResponse(
            path, media_type="application/octet-stream", filename=filename, headers=headers
        )
    try:
        if settings.s3_presign_downloads:
            url = store.presign(record.path, settings.s3_presign_expires_s)
            if url is not None:
                return RedirectResponse(url, status_code=307, headers=headers)
        body = store.open(record.path)
    except FileNotFoundError:
        raise HTTPException(404, detail=f"experiment {experiment_id} has no stored model") from None
    except StoreUnavailable as err:
        raise HTTPException(503, detail=str(err)) from None
    headers["Content-Length"] = str(size)
    headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return StreamingResponse(_chunks(body), media_type="application/octet-stream", headers=headers)


def _chunks(body: IO[bytes]) -> Iterator[bytes]:
    """The object's bytes, CHUNK_BYTES at a time (Starlette iterates it in a thread)."""
    try:
        while chunk := body.read(CHUNK_BYTES):
            yield chunk
    finally:
        body.close()


async def _spool(request: Request, limit: int, directory: str | None) -> str:
    """Stream the body to a temp file (at most ``limit`` bytes); returns its path."""
    fd, name = tempfile.mkstemp(suffix=".rpg", dir=directory)
    size = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge(limit)
                fh.write(chunk)
    except BaseException:
        os.unlink(name)
        raise
    if size == 0:
        os.unlink(name)
        raise HTTPException(400, detail="empty upload: send the .rpg file as the request body")
    return name


UPLOAD_NAME = "upload.rpg"  # an upload's name in answers when the client gives none
UploadName = Annotated[
    str | None,
    Query(
        max_length=255,
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9 _.()+\-]*$",
        description="the uploaded file's name, as messages should call it (default upload.rpg)",
    ),
]


def _shown(message: Any, path: str, name: str) -> Any:
    """``message`` (JSON-like) with the server's temp file (its path, or its random basename)
    called by the upload's name."""
    return redact_values(redact_values(message, path, name), os.path.basename(path), name)


def _inspect(path: str, name: str = UPLOAD_NAME) -> dict[str, Any]:
    try:
        from rpg_core.format import inspect_compact
        from rpg_core.format.header import read_header  # torch-free: refuses most uploads
    except ImportError:
        raise HTTPException(503, detail="inspecting .rpg files is not available") from None
    from rpg_core.exceptions import RPGError

    try:
        read_header(path)  # a bad header answers before torch is imported (seconds, cold)
        from rpg_core.format import inspect_compact

        out: dict[str, Any] = _shown(dict(inspect_compact(path)), path, name)
        return out
    except RPGError as err:
        message = _shown(str(err), path, name)
        raise HTTPException(422, detail=f"not a valid .rpg file: {message}") from None
    except Exception as err:  # noqa: BLE001 - untrusted bytes: any parse failure is a 4xx
        log.warning("inspect_compact failed on an upload: %r", err)
        raise HTTPException(422, detail=f"{name}: not a valid .rpg file") from None


@router.post(
    "/models/inspect",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def inspect_model(
    request: Request, settings: SettingsDep, _auth: WriteAuth, filename: UploadName = None
) -> Any:
    """Validate an uploaded .rpg (the raw request body, at most max_upload_bytes) and describe
    it: format version, architecture, ring sizes, checksums, inference metadata (in bounds).
    Nothing is unpickled. Messages call the file ``filename`` (default upload.rpg), never by
    the server's temporary path."""
    from starlette.concurrency import run_in_threadpool

    path = await _spool(request, settings.max_upload_bytes, None)
    try:
        return await run_in_threadpool(_inspect, path, filename or UPLOAD_NAME)
    finally:
        os.unlink(path)
