"""When the database cannot serve a request in time, the answer is a typed, retryable 503,
not a 500, and the service carries on once the database is free again."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest

from mediakeep.keep import MediaKeep
from tests.api.conftest import ApiFactory, new_owner
from tests.conftest import Backend, KeepFactory
from tests.support.aio import run_sync
from tests.support.provider import Provider


def dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


class TableLock:
    """Another client holding an exclusive lock on ``assets``: every query on it waits."""

    def __init__(self, url: str) -> None:
        self.url = dsn(url)
        self.taken = threading.Event()
        self.release = threading.Event()
        self.thread = threading.Thread(target=lambda: run_sync(self._hold()), daemon=True)

    async def _hold(self) -> None:
        conn = await asyncpg.connect(self.url)
        try:
            async with conn.transaction():
                await conn.execute("LOCK TABLE assets IN ACCESS EXCLUSIVE MODE")
                self.taken.set()
                while not self.release.is_set():
                    await asyncio.sleep(0.02)
        finally:
            await conn.close()

    def __enter__(self) -> TableLock:
        self.thread.start()
        assert self.taken.wait(10)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release.set()
        self.thread.join(10)


def test_an_exhausted_connection_pool_answers_503_with_retry_after(api_for: ApiFactory) -> None:
    api = api_for(
        Backend("postgres", "local"),
        db_pool_size=1,
        db_pool_overflow=0,
        db_pool_timeout=0.3,
        serve_worker=False,
    )
    owner = new_owner()
    first: dict[str, Any] = {}

    def blocked_request() -> None:
        with httpx.Client(base_url=api.url, timeout=60, trust_env=False) as c:
            r = c.get("/v1/assets", headers={"Authorization": f"Bearer {api.token(owner)}"})
            first["status"] = r.status_code

    with TableLock(api.settings.database_url or ""):
        holder = threading.Thread(target=blocked_request)
        holder.start()
        time.sleep(0.5)  # the first request now holds the only connection, waiting
        r = api.client(owner).get("/v1/assets")
        assert r.status_code == 503
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "database_unavailable"
        assert r.headers["retry-after"] == "1"
    holder.join(30)
    assert first["status"] == 200
    assert api.client(owner).get("/v1/assets").status_code == 200


@pytest.mark.parametrize("backend", [Backend("postgres", "local")], ids=lambda b: b.id)
async def test_an_ingest_item_that_cannot_reach_the_database_fails_retryably(
    keeps: KeepFactory, provider: Provider, owner: str
) -> None:
    keep: MediaKeep = await keeps.open(db_pool_size=1, db_pool_overflow=0, db_pool_timeout=0.3)
    async with keep.engine.connect() as held:  # the only connection, taken
        await held.exec_driver_sql("SELECT 1")
        [res] = await keep.ingest_urls([provider.url("/img/41.png")], owner=owner)
    assert res.status == "failed"
    assert res.error is not None and res.error["code"] == "database_unavailable"
    [again] = await keep.ingest_urls([provider.url("/img/42.png")], owner=owner)
    assert again.status == "stored"
