"""Request ids, structured JSON logs with secrets scrubbed, and Prometheus metrics."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "mediakeep_request_id", default=None
)
REQUEST_ID_HEADER = "X-Request-Id"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

CATEGORIES = ("upload", "download", "cleanup", "validate", "info")

# -- logging ---------------------------------------------------------------------------

# Whatever reaches a log line passes through these: signed-URL signatures, bearer tokens,
# JWTs and API keys never make it out, wherever they appear (messages, tracebacks, extras).
_SCRUB = [
    (
        re.compile(
            r"(?i)\b(sig|x-amz-signature|x-amz-credential|x-amz-security-token|token|apikey|api_key)=[^&\s\"']+"
        ),
        r"\1=[redacted]",
    ),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+"), r"\1 [redacted]"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), "[redacted-jwt]"),
    (re.compile(r"\bmk_[A-Za-z0-9_-]{20,}"), "[redacted-api-key]"),
]
_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys()
    | {"message", "asctime", "taskName", "color_message"}
)


# Every pattern above needs one of these (in lower case) to match: a line without any of
# them, like nearly every access-log line, skips the four regex scans (they were ~8% of a
# permanent-link redirect's CPU).
_SCRUB_TRIGGERS = ("sig", "x-amz-", "token", "apikey", "api_key", "bearer", "eyj", "mk_")


def scrub(text: str, secrets: tuple[str, ...] = ()) -> str:
    low = text.lower()
    if any(trigger in low for trigger in _SCRUB_TRIGGERS):
        for pattern, repl in _SCRUB:
            text = pattern.sub(repl, text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, category and
    any ``extra`` fields, all scrubbed of secrets."""

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        super().__init__()
        self._secrets = tuple(s for s in secrets if s)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id_var.get(),
            "category": getattr(record, "category", None) or "info",
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and key not in entry and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        text = json.dumps(entry, default=str, ensure_ascii=False)
        return scrub(text, self._secrets)


def configure_logging(level: str = "info", secrets: tuple[str, ...] = ()) -> None:
    """Send every log record (ours, uvicorn's, libraries') to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # Our own access log carries the route, the owner and the request id instead.
    logging.getLogger("uvicorn.access").disabled = True


access_log = logging.getLogger("mediakeep.access")


def category_for(method: str, route: str, status: int) -> str:
    if 400 <= status < 500 and status not in (401, 404, 429):
        return "validate"
    if route.startswith(("/v1/ingest", "/v1/uploads")) or (
        route.startswith("/v1/files") and method == "PUT"
    ):
        return "upload"
    if method == "DELETE":
        return "cleanup"
    if route.endswith(("/content", "/url")) or route.startswith(("/v1/signed-urls", "/v1/files")):
        return "download"
    return "info"


# -- metrics ---------------------------------------------------------------------------


class Metrics:
    """One registry per app, so several apps (tests) never collide in a global one."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        r = self.registry
        self.requests = Counter(
            "mediakeep_http_requests",
            "HTTP requests answered, by route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "mediakeep_http_request_duration_seconds",
            "Time from request start to the end of the response body.",
            ["method", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=r,
        )
        self.in_flight = Gauge(
            "mediakeep_http_requests_in_flight", "Requests being handled now.", registry=r
        )
        self.ingest_items = Counter(
            "mediakeep_ingest_items",
            "Items through the store pipeline, by way in and outcome.",
            ["via", "status"],
            registry=r,
        )
        self.ingest_bytes = Counter(
            "mediakeep_ingest_bytes", "Bytes stored, by way in.", ["via"], registry=r
        )
        self.ingest_failures = Counter(
            "mediakeep_ingest_failures",
            "Failed items, by way in and error code.",
            ["via", "reason"],
            registry=r,
        )
        self.rate_limited = Counter(
            "mediakeep_rate_limited", "Requests refused by the rate limit.", registry=r
        )

    def item(
        self, via: str, status: str, size: int | None = None, reason: str | None = None
    ) -> None:
        self.ingest_items.labels(via, status).inc()
        if status == "stored" and size:
            self.ingest_bytes.labels(via).inc(size)
        if status == "failed":
            self.ingest_failures.labels(via, reason or "internal_error").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


# -- the middleware --------------------------------------------------------------------


class RequestContextMiddleware:
    """Gives every request an id (echoed as ``X-Request-Id``), counts and times it, and
    writes one access log line. Pure ASGI, so streamed bodies pass through untouched."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        rid = incoming if _SANE_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        token = request_id_var.set(rid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.metrics.in_flight.dec()
            elapsed = time.perf_counter() - started
            route_obj = scope.get("route")
            route = getattr(route_obj, "path_format", None) or getattr(route_obj, "path", None)
            route = route or "unmatched"
            method = scope.get("method", "")
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(elapsed)
            state = scope.get("state") or {}
            access_log.info(
                "%s %s %d",
                method,
                route,
                status,
                extra={
                    "category": category_for(method, route, status),
                    "method": method,
                    "route": route,
                    # The path only: query strings carry signatures.
                    "path": scope.get("path", ""),
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                    "owner": state.get("owner"),
                },
            )
            request_id_var.reset(token)
