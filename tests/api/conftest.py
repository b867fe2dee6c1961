"""The HTTP service under a real uvicorn server, reached over loopback HTTP."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from mediakeep.auth import mint_token
from mediakeep.settings import Settings
from tests.conftest import Backend, ServiceThread

JWT_SECRET = "api-test-jwt-secret-long-enough-for-hs256-and-hs512-0123456789abcdef"
API_BACKENDS = [Backend("sqlite", "local"), Backend("postgres", "s3")]


@dataclass
class Api:
    url: str
    settings: Settings
    service: ServiceThread
    clients: list[httpx.Client] = field(default_factory=list)

    def token(self, owner: str | None, **kw: Any) -> str:
        return mint_token(self.settings.jwt_secret or JWT_SECRET, owner, **kw)

    def client(
        self, owner: str | None = None, *, headers: dict[str, str] | None = None
    ) -> httpx.Client:
        """A client signed in as ``owner`` (or with ``headers``, or anonymous)."""
        h = dict(headers or {})
        if owner is not None:
            h["Authorization"] = f"Bearer {self.token(owner)}"
        c = httpx.Client(base_url=self.url, headers=h, timeout=60, trust_env=False)
        self.clients.append(c)
        return c

    def close(self) -> None:
        for c in self.clients:
            c.close()


ApiFactory = Callable[..., Api]


@pytest.fixture
def api_for(service_for: Any) -> Iterator[ApiFactory]:
    """Start the service for a backend with extra settings; close its clients after."""
    made: list[Api] = []

    def make(backend: Backend, **overrides: Any) -> Api:
        values: dict[str, Any] = {"jwt_secret": JWT_SECRET, "sweep_interval": 0}
        values.update(overrides)
        svc, settings = service_for(backend, **values)
        api = Api(svc.url, settings, svc)
        made.append(api)
        return api

    yield make
    for api in made:
        api.close()


@pytest.fixture(params=API_BACKENDS, ids=lambda b: b.id)
def api(request: pytest.FixtureRequest, api_for: ApiFactory) -> Api:
    return api_for(request.param)


def new_owner() -> str:
    return f"u{uuid.uuid4().hex[:12]}"


def plain() -> httpx.Client:
    """No base URL, no credentials: for signed and public URLs."""
    return httpx.Client(timeout=60, trust_env=False)
