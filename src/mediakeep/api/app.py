"""The FastAPI application over the library."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from .. import __version__
from ..keep import MediaKeep
from ..settings import Settings
from . import files, problems
from .problems import problem


def create_app(settings: Settings | None = None, keep: MediaKeep | None = None) -> FastAPI:
    """Build the app. Given a ``keep``, the caller owns its lifecycle."""
    owned = keep is None
    the_keep = keep or MediaKeep(settings or Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if owned:
            await the_keep.start()
        try:
            yield
        finally:
            if owned:
                await the_keep.close()

    app = FastAPI(
        title="mediakeep",
        version=__version__,
        description="Keep AI-generated media for good.",
        lifespan=lifespan,
    )
    app.state.keep = the_keep
    problems.install(app)
    app.include_router(files.router)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], response_model=None)
    async def readyz(request: Request) -> Any:
        """The database and the object store answer."""
        try:
            await request.app.state.keep.ping()
        except Exception as exc:
            return problem(503, "not_ready", f"dependency unavailable: {type(exc).__name__}")
        return JSONResponse({"status": "ready"})

    return app
