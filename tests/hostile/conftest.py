"""One real service for the hostile corpus: embedded defaults (SQLite + local files),
private networks refused, a "public" provider on 127.0.0.2 trusted as if it were a CDN."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from mediakeep.auth import mint_token
from tests.conftest import Backend, ServiceThread, make_settings
from tests.support.netutil import free_port
from tests.support.provider import Provider

SECRET = "hostile-suite-jwt-secret-0123456789abcdef0123456789abcdef0123456789"
MAX_FILE = 2_000_000


@dataclass
class Target:
    url: str
    provider: Provider
    owner: str

    def client(self, owner: str | None = None, **headers: str) -> httpx.Client:
        h = dict(headers)
        if owner is not None:
            h["Authorization"] = f"Bearer {mint_token(SECRET, owner)}"
        return httpx.Client(base_url=self.url, headers=h, timeout=60, trust_env=False)

    def assert_untouched(self, owner: str) -> None:
        """Nothing stored for the owner, and the service still healthy."""
        with self.client(owner) as c:
            listed = c.get("/v1/assets").json()
            assert listed["items"] == [], listed
            stats = c.get("/v1/storage/stats").json()
            assert stats["assets"] == 0 and stats["bytes"] == 0, stats
            assert c.get("/healthz").status_code == 200


@pytest.fixture(scope="module")
def hostile(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Target]:
    tmp: Path = tmp_path_factory.mktemp("hostile")
    with Provider(host="127.0.0.2") as provider:
        port = free_port()
        settings = make_settings(
            Backend("sqlite", "local"),
            tmp,
            request,
            base_url=f"http://127.0.0.1:{port}",
            allow_private_networks=False,
            trusted_networks=("127.0.0.2/32",),
            max_file_size=MAX_FILE,
            download_timeout=2.0,
            max_retries=0,
            jwt_secret=SECRET,
            sweep_interval=0,
        )
        svc = ServiceThread(settings, port).start()
        try:
            yield Target(svc.url, provider, f"h{uuid.uuid4().hex[:10]}")
        finally:
            svc.stop()


@pytest.fixture
def victim() -> str:
    return f"v{uuid.uuid4().hex[:12]}"
