"""Real servers for the whole suite: SeaweedFS (S3 with signatures checked), PostgreSQL
(the local one, or a throwaway embedded one), and a local HTTP "provider"."""

from __future__ import annotations

import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from mediakeep import MediaKeep, Settings
from mediakeep.api.app import create_app
from tests.support.netutil import free_port
from tests.support.postgres import PostgresServer
from tests.support.provider import Provider
from tests.support.seaweed import SeaweedS3
from tests.support.supabase_storage import SupabaseTarget

PRIVATE_BUCKET = f"mk-assets-{uuid.uuid4().hex[:8]}"
PUBLIC_BUCKET = f"mk-public-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def seaweed() -> Iterator[SeaweedS3]:
    server = SeaweedS3(anonymous_read_buckets=[PUBLIC_BUCKET])
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def supabase() -> Iterator[SupabaseTarget]:
    """The local Supabase Storage server, or a real project when
    MEDIAKEEP_TEST_SUPABASE_URL and MEDIAKEEP_TEST_SUPABASE_KEY are set."""
    target = SupabaseTarget.from_env()
    try:
        yield target
    finally:
        target.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def pg_url(postgres: PostgresServer) -> Iterator[str]:
    url = postgres.create_database()
    try:
        yield url
    finally:
        postgres.drop_database(url)


@pytest.fixture(scope="session")
def provider() -> Iterator[Provider]:
    with Provider() as p:
        yield p


@dataclass
class Backend:
    db: str
    store: str

    @property
    def id(self) -> str:
        return f"{self.db}-{self.store}"


BACKENDS = [
    Backend("sqlite", "local"),
    Backend("sqlite", "s3"),
    Backend("postgres", "local"),
    Backend("postgres", "s3"),
    Backend("sqlite", "supabase"),
]


def make_settings(
    backend: Backend,
    tmp: Path,
    request: pytest.FixtureRequest,
    **overrides: object,
) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp,
        "private_bucket": PRIVATE_BUCKET,
        "public_bucket": PUBLIC_BUCKET,
        "allow_private_networks": True,
        "retry_backoff": 0.01,
        "signing_secret": "test-signing-secret",
    }
    if backend.db == "postgres":
        values["database_url"] = request.getfixturevalue("pg_url")
    else:
        values["database_url"] = f"sqlite+aiosqlite:///{tmp / 'mk.db'}"
    if backend.store == "s3":
        sw: SeaweedS3 = request.getfixturevalue("seaweed")
        values.update(
            store="s3",
            s3_endpoint=sw.endpoint,
            s3_region=sw.region,
            s3_access_key_id=sw.access_key,
            s3_secret_access_key=sw.secret_key,
        )
    elif backend.store == "supabase":
        sb: SupabaseTarget = request.getfixturevalue("supabase")
        sb.uses(PRIVATE_BUCKET)
        sb.uses(PUBLIC_BUCKET)
        values.update(store="supabase", supabase_url=sb.url, supabase_service_key=sb.service_key)
    else:
        values["local_root"] = tmp / "objects"
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def session_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mk")


@pytest.fixture(params=BACKENDS, ids=lambda b: b.id)
def backend(request: pytest.FixtureRequest) -> Backend:
    b: Backend = request.param
    return b


@pytest.fixture
def owner() -> str:
    # Tests share databases and buckets; a fresh owner keeps each test's view its own.
    return f"u{uuid.uuid4().hex[:12]}"


class KeepFactory:
    def __init__(self, backend: Backend, tmp: Path, request: pytest.FixtureRequest) -> None:
        self.backend = backend
        self.tmp = tmp
        self.request = request
        self.opened: list[MediaKeep] = []

    def settings(self, **overrides: object) -> Settings:
        return make_settings(self.backend, self.tmp, self.request, **overrides)

    async def open(self, **overrides: object) -> MediaKeep:
        keep = MediaKeep(self.settings(**overrides))
        await keep.start()
        self.opened.append(keep)
        return keep


@pytest.fixture
async def keeps(
    backend: Backend, session_tmp: Path, request: pytest.FixtureRequest
) -> AsyncIterator[KeepFactory]:
    tmp = session_tmp / backend.id
    tmp.mkdir(exist_ok=True)
    factory = KeepFactory(backend, tmp, request)
    yield factory
    for keep in factory.opened:
        await keep.close()


@pytest.fixture
async def keep(keeps: KeepFactory) -> MediaKeep:
    return await keeps.open()


class ServiceThread:
    """``mediakeep``'s HTTP app under a real uvicorn server, in a thread."""

    def __init__(self, settings: Settings, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> ServiceThread:
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                return self
            threading.Event().wait(0.05)
        raise RuntimeError("service did not start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def service_for(session_tmp: Path, request: pytest.FixtureRequest) -> Iterator[object]:
    """Start a service for a backend; the settings' base_url points at it."""
    started: list[ServiceThread] = []

    def start(backend: Backend, **overrides: object) -> tuple[ServiceThread, Settings]:
        port = free_port()
        tmp = session_tmp / backend.id
        tmp.mkdir(exist_ok=True)
        settings = make_settings(
            backend, tmp, request, base_url=f"http://127.0.0.1:{port}", **overrides
        )
        svc = ServiceThread(settings, port).start()
        started.append(svc)
        return svc, settings

    yield start
    for svc in started:
        svc.stop()
