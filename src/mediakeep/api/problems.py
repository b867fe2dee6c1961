"""RFC 9457 problem+json responses with a stable ``code``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match

from .. import errors as _errors_module
from ..errors import MediaKeepError, RateLimited, Unauthorized, database_unavailable
from ..media import probe as _probe_module

PROBLEM = "application/problem+json"
log = logging.getLogger("mediakeep.api")
_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    410: "Gone",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    416: "Range Not Satisfiable",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
# Codes the HTTP layer itself produces, besides the library's typed errors.
HTTP_CODES: dict[int, list[str]] = {
    404: ["not_found"],
    405: ["method_not_allowed"],
    413: ["request_too_large"],
    416: ["range_not_satisfiable"],
    422: ["validation_error"],
    500: ["internal_error"],
    503: ["not_ready"],
}
_HTTP_CODE = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
}


def _all_errors() -> list[type[MediaKeepError]]:
    # Every error class loaded into the library, so the docs list each code once.
    assert _errors_module and _probe_module
    seen: list[type[MediaKeepError]] = []
    stack: list[type[MediaKeepError]] = [MediaKeepError]
    while stack:
        cls = stack.pop()
        if cls not in seen:
            seen.append(cls)
            stack.extend(cls.__subclasses__())
    return seen


def codes_by_status() -> dict[int, list[str]]:
    table: dict[int, set[str]] = {k: set(v) for k, v in HTTP_CODES.items()}
    for cls in _all_errors():
        table.setdefault(cls.status, set()).add(cls.code)
    return {k: sorted(v) for k, v in sorted(table.items())}


def status_for_code(code: str) -> int:
    for cls in _all_errors():
        if cls.code == code:
            return cls.status
    return 500


def problem(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://mediakeep.dev/problems/{code}",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "code": code,
        "detail": detail,
    }
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def for_error(exc: MediaKeepError) -> JSONResponse:
    headers: dict[str, str] = {}
    extra: dict[str, Any] = {}
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="mediakeep"'
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
        extra["retry_after"] = exc.retry_after
    return problem(exc.status, exc.code, exc.message, headers=headers or None, **extra)


def install(app: FastAPI) -> None:
    @app.exception_handler(MediaKeepError)
    async def _mk(req: Request, exc: MediaKeepError) -> JSONResponse:
        if isinstance(exc, RateLimited):
            # Counted here, where every refusal becomes a 429, whichever limiter refused.
            req.app.state.metrics.rate_limited.inc()
        if exc.status >= 500:
            log.warning("request failed: %s", exc.message, extra={"code": exc.code})
        return for_error(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in exc.errors()
        ]
        return problem(422, "validation_error", "the request is not valid", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(req: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODE.get(exc.status_code, "http_error")
        headers = dict(exc.headers) if exc.headers else {}
        if exc.status_code == 405:
            # Starlette names only the first route on the path; list every method it has.
            headers["Allow"] = ", ".join(_allowed_methods(req))
        return problem(exc.status_code, code, str(exc.detail), headers=headers or None)

    @app.exception_handler(Exception)
    async def _unexpected(_req: Request, exc: Exception) -> JSONResponse:
        busy = database_unavailable(exc)
        if busy is not None:
            # Overload or a restarting database is not a bug: say so, and when to retry.
            log.warning("request failed: %s", busy.message, extra={"code": busy.code})
            return problem(503, busy.code, busy.message, headers={"Retry-After": "1"})
        log.error("unhandled error", exc_info=exc)
        return problem(500, "internal_error", "an unexpected error occurred")


def _allowed_methods(req: Request) -> list[str]:
    methods: set[str] = set()
    for route in req.app.router.routes:
        match, _ = route.matches({**req.scope, "method": "GET"})
        if match != Match.NONE and isinstance(route, BaseRoute):
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)
