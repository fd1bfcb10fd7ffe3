"""The service layer's errors (the API maps them in ``api.errors``)."""

from __future__ import annotations


class ConflictError(Exception):
    """The experiment is not in a state that allows the operation (HTTP 409)."""


class CursorError(ValueError):
    """A pagination cursor that this server did not produce (HTTP 422)."""
