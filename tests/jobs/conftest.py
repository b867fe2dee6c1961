"""Fixtures for the jobs tests. Every test gets a database of its own: job queues are
global by design (any worker takes any due job), so tests sharing a database would run
each other's jobs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mediakeep import MediaKeep, Settings
from mediakeep.auth import mint_token
from tests.conftest import Backend, ServiceThread, make_settings
from tests.jobs.support import CallbackReceiver, JwksServer, MediaServer
from tests.support.netutil import free_port
from tests.support.postgres import PostgresServer

JOB_BACKENDS = [Backend("sqlite", "local"), Backend("postgres", "s3")]
JWT_SECRET = "jobs-test-jwt-secret-long-enough-for-hs256-0123456789abcdef"
# Quick retries and leases: the tests wait for outcomes, never for wall-clock amounts.
FAST = {
    "job_poll_interval": 0.05,
    "job_retry_backoff": 0.05,
    "job_retry_max_backoff": 0.2,
    "job_visibility_timeout": 5.0,
    "job_shutdown_grace": 2.0,
    "callback_retry_backoff": 0.05,
    "callback_retry_max_backoff": 0.2,
    "jwt_secret": JWT_SECRET,
    "sweep_interval": 0,
    "variants_enabled": False,
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: worker processes, kills and store outages (bounded; in make test)"
    )


@pytest.fixture(params=JOB_BACKENDS, ids=lambda b: b.id)
def jobs_backend(request: pytest.FixtureRequest) -> Backend:
    b: Backend = request.param
    return b


@pytest.fixture
def fresh_db(
    jobs_backend: Backend, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[str]:
    if jobs_backend.db == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'jobs.db'}"
        return
    pg: PostgresServer = request.getfixturevalue("postgres")
    url = pg.create_database()
    try:
        yield url
    finally:
        pg.drop_database(url)


class Keeps:
    def __init__(
        self, backend: Backend, db: str, tmp: Path, request: pytest.FixtureRequest
    ) -> None:
        self.backend = backend
        self.db = db
        self.tmp = tmp
        self.request = request
        self.opened: list[MediaKeep] = []

    def settings(self, **overrides: Any) -> Settings:
        values = {**FAST, "database_url": self.db, **overrides}
        return make_settings(self.backend, self.tmp, self.request, **values)

    async def open(self, **overrides: Any) -> MediaKeep:
        keep = MediaKeep(self.settings(**overrides))
        await keep.start()
        self.opened.append(keep)
        return keep


@pytest.fixture
async def keeps(
    jobs_backend: Backend, fresh_db: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Keeps]:
    factory = Keeps(jobs_backend, fresh_db, tmp_path, request)
    yield factory
    for keep in factory.opened:
        await keep.close()


@pytest.fixture
def owner() -> str:
    return f"j{uuid.uuid4().hex[:12]}"


class Service:
    def __init__(self, thread: ServiceThread, settings: Settings) -> None:
        self.thread = thread
        self.settings = settings
        self.url = thread.url
        self.clients: list[httpx.Client] = []

    def client(self, owner: str | None = None, **kw: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {mint_token(JWT_SECRET, owner)}"} if owner else {}
        kw.setdefault("timeout", 60)
        c = httpx.Client(base_url=self.url, headers=headers, trust_env=False, **kw)
        self.clients.append(c)
        return c


@pytest.fixture
def services(keeps: Keeps) -> Iterator[Any]:
    """Start the HTTP service (with its in-process worker unless told otherwise) on this
    test's database."""
    started: list[Service] = []

    def start(**overrides: Any) -> Service:
        port = free_port()
        settings = keeps.settings(base_url=f"http://127.0.0.1:{port}", **overrides)
        svc = Service(ServiceThread(settings, port).start(), settings)
        started.append(svc)
        return svc

    yield start
    for svc in started:
        for c in svc.clients:
            c.close()
        svc.thread.stop()


@pytest.fixture(scope="session")
def fal_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="session")
def jwks(fal_key: Ed25519PrivateKey) -> Iterator[JwksServer]:
    # A second key, as during a rotation: verification must try each.
    with JwksServer([Ed25519PrivateKey.generate(), fal_key]) as server:
        yield server


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    with CallbackReceiver(fail_first=2) as server:
        yield server


@pytest.fixture(scope="session")
def media() -> Iterator[MediaServer]:
    with MediaServer() as server:
        yield server
