"""API tokens: created once, stored as their sha256, checked in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..models import ApiToken, utcnow
from .errors import ConflictError


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create_token(session: Session, name: str) -> str:
    """A new API token (returned once; only its sha256 is stored). Commits."""
    token = "rpg_" + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name, token_hash=hash_token(token)))
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise ConflictError(f"a token named {name!r} exists already") from None
    return token


def check_token(session: Session, token: str) -> ApiToken | None:
    """The token's row if ``token`` is valid (constant-time comparison of the hashes)."""
    digest = hash_token(token)
    row = session.scalars(select(ApiToken).where(ApiToken.token_hash == digest)).first()
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=1):
        row.last_used_at = now
        session.commit()
    return row


class TokenCache:
    """Valid tokens seen in the last ``ttl_s`` seconds (sha256 -> name), so a request of a known
    token needs no query. A token deleted from the database stops working within ``ttl_s``;
    only valid tokens are kept (a wrong one is looked up, and throttled, every time); at most
    ``max_entries`` (then it starts over, as the rate limits' buckets do)."""

    def __init__(self, ttl_s: float = 5.0, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._names: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def cached(self, token: str) -> str | None:
        """The token's name if it was found valid less than ``ttl_s`` ago (no query), else None."""
        digest = hash_token(token)
        with self._lock:
            hit = self._names.get(digest)
        if hit is not None and time.monotonic() < hit[1]:
            return hit[0]
        return None

    def name_of(self, session: Session, token: str) -> str | None:
        """The token's name if it is valid: from the cache while fresh, else ``check_token``."""
        name = self.cached(token)
        if name is not None:
            return name
        digest = hash_token(token)
        now = time.monotonic()
        row = check_token(session, token)
        with self._lock:
            if row is None:
                self._names.pop(digest, None)
                return None
            if len(self._names) >= self.max_entries:
                self._names.clear()
            self._names[digest] = (row.name, now + self.ttl_s)
        return row.name
