"""FastAPI dependencies (Annotated aliases): settings, DB session, read/write authorisation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from . import crud
from .settings import Settings

bearer = HTTPBearer(auto_error=False, description="an API token from `rpg token create NAME`")


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessionmaker() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, detail=message, headers={"WWW-Authenticate": "Bearer"})


def require_token(session: SessionDep, creds: Credentials) -> str:
    """Every write: a valid ``Authorization: Bearer <token>``. Returns the token's name."""
    if creds is None or not creds.credentials:
        raise _unauthorized("this request needs an API token (Authorization: Bearer <token>)")
    row = crud.check_token(session, creds.credentials)
    if row is None:
        raise _unauthorized("invalid API token")
    return row.name


def allow_read(session: SessionDep, settings: SettingsDep, creds: Credentials) -> str | None:
    """Reads: public when ``public_reads`` is set, otherwise they need a token as writes do."""
    if settings.public_reads:
        return None
    return require_token(session, creds)


WriteAuth = Annotated[str, Depends(require_token)]
ReadAuth = Annotated[str | None, Depends(allow_read)]

MAX_ID = 2**31 - 1
ExperimentId = Annotated[int, Path(ge=1, le=MAX_ID, description="experiment id", examples=[42])]
SweepId = Annotated[int, Path(ge=1, le=MAX_ID, description="sweep id", examples=[3])]
