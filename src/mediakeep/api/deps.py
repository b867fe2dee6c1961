"""Request-scoped access to the shared ``MediaKeep``."""

from __future__ import annotations

from fastapi import Request

from ..keep import MediaKeep


def keep_of(request: Request) -> MediaKeep:
    keep: MediaKeep = request.app.state.keep
    return keep
