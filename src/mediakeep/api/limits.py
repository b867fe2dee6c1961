"""Request body limits, enforced on the declared length and again while the body arrives
(chunked bodies declare none). Pure ASGI, so uploads still stream."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .problems import problem


class BodyTooLarge(HTTPException):
    # An HTTPException, so FastAPI's body parsing passes it on instead of calling it a 400;
    # the problem handler turns it into ``request_too_large``.
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class BodyLimitMiddleware:
    def __init__(
        self, app: ASGIApp, default: int, overrides: Sequence[tuple[str, str, int]] = ()
    ) -> None:
        """``overrides``: (method, path prefix, limit), first match wins."""
        self.app = app
        self.default = default
        self.overrides = list(overrides)

    def limit_for(self, method: str, path: str) -> int:
        for m, prefix, limit in self.overrides:
            if method == m and path.startswith(prefix):
                return limit
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["method"], scope["path"])
        declared = None
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
                break
        if declared is not None and declared > limit:
            exc = BodyTooLarge(limit)
            await problem(413, "request_too_large", exc.detail)(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited, send)
