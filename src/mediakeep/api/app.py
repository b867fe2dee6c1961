"""The FastAPI application over the library."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response

from .. import __version__
from ..auth import ApiKeys, TokenVerifier
from ..jobs.service import start_service_worker
from ..keep import MediaKeep
from ..settings import Settings
from ..stores.local import FILES_ROUTE
from . import files, openapi, problems
from .limits import BodyLimitMiddleware
from .observability import REQUEST_ID_HEADER, Metrics, RequestContextMiddleware
from .problems import problem
from .routes import build_router
from .routes_console import build_console_router
from .routes_jobs import build_jobs_router
from .routes_media import build_media_router
from .routes_versions import build_versions_router
from .schemas import Status
from .security import Authenticator

log = logging.getLogger("mediakeep.api")


def create_app(settings: Settings | None = None, keep: MediaKeep | None = None) -> FastAPI:
    """Build the app. Given a ``keep``, the caller owns its lifecycle."""
    owned = keep is None
    the_keep = keep or MediaKeep(settings or Settings())
    s = the_keep.settings
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if owned:
            await the_keep.start()
        sweeper = None
        if s.sweep_interval > 0:
            sweeper = asyncio.create_task(_sweep_forever(the_keep, s.sweep_interval))
        jobs_worker = start_service_worker(the_keep)
        try:
            yield
        finally:
            if jobs_worker is not None:
                await jobs_worker.stop()
            if sweeper is not None:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
            if owned:
                await the_keep.close()

    app = FastAPI(
        title="mediakeep",
        version=__version__,
        lifespan=lifespan,
    )
    app.state.keep = the_keep
    app.state.metrics = metrics
    app.state.auth = Authenticator(
        TokenVerifier(s.resolved_jwt_secret(), s.jwt_audience), ApiKeys(s.api_keys)
    )
    problems.install(app)
    app.include_router(files.router(s))
    app.include_router(build_router(s))
    app.include_router(build_jobs_router(s))
    app.include_router(build_media_router(s))
    app.include_router(build_versions_router(s))
    app.include_router(build_console_router(s))

    @app.get("/healthz", tags=["ops"], response_model=Status)
    async def healthz() -> Status:
        """The process is up."""
        return Status(status="ok")

    @app.get(
        "/readyz",
        tags=["ops"],
        response_model=Status,
        responses={503: {"description": ""}},
    )
    async def readyz(request: Request) -> Any:
        """The database and the object store answer."""
        try:
            await request.app.state.keep.ping()
        except Exception as exc:
            return problem(503, "not_ready", f"dependency unavailable: {type(exc).__name__}")
        return JSONResponse({"status": "ready"})

    @app.get(
        "/metrics",
        tags=["ops"],
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def prometheus() -> Response:
        """Prometheus metrics: requests, latency, ingest items, bytes and failures."""
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    openapi.finish(app, s)
    if s.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(s.cors_origins),
            allow_methods=["GET", "HEAD", "POST", "PUT", "DELETE"],
            allow_headers=[
                "Authorization",
                "X-API-Key",
                "Content-Type",
                "Range",
                REQUEST_ID_HEADER,
            ],
            expose_headers=["ETag", "Content-Range", "Retry-After", "Location", REQUEST_ID_HEADER],
            max_age=600,
        )
    app.add_middleware(
        BodyLimitMiddleware,
        default=s.max_request_body,
        overrides=[
            # Uploads are bounded by the file size limit (plus the multipart framing).
            ("POST", "/v1/uploads", s.max_file_size + 1024 * 1024),
            # Multipart bundles spool to disk; JSON ones are bounded by their route.
            ("POST", "/v1/bundles", s.max_file_size + 1024 * 1024),
            ("PUT", FILES_ROUTE + "/", s.max_file_size),
            # Provider results in sync mode carry their media inline (data: URIs).
            ("POST", "/v1/generations", s.max_media_json_body),
            ("POST", "/v1/webhooks/fal", s.max_media_json_body),
            ("POST", "/v1/persist-json", s.max_media_json_body),
        ],
    )
    # Outermost, so it also sees CORS preflights and the body limit's refusals.
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    return app


async def _sweep_forever(keep: MediaKeep, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await keep.sweep_uploads()
        except Exception:
            log.exception("sweeping expired uploads failed", extra={"category": "cleanup"})
