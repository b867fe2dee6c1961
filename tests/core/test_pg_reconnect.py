"""Pooled PostgreSQL connections the server has closed (a restart, a failover, an idle
timeout, an operator's pg_terminate_backend) are replaced at checkout: the next call works,
the caller never sees the dead connection. This is what SQLAlchemy's pre-ping did, at three
round trips per checkout; we check the socket instead (db/engine.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event, text

from tests.conftest import Backend, KeepFactory
from tests.core.helpers import png_bytes
from tests.support.postgres import PostgresServer
from tests.support.provider import Provider

PG = [Backend("postgres", "local")]


@pytest.mark.parametrize("backend", PG, ids=lambda b: b.id)
async def test_connections_closed_by_the_server_are_replaced(
    backend: Backend, keeps: KeepFactory, postgres: PostgresServer, provider: Provider, owner: str
) -> None:
    url = await postgres.create_database_async()
    database = url.rsplit("/", 1)[1]
    keep = await keeps.open(database_url=url, db_pool_size=4)

    async def hold() -> None:
        async with keep.repo.engine.connect() as c:
            await c.execute(text("SELECT pg_sleep(0.05)"))

    await asyncio.gather(*(hold() for _ in range(4)))  # the pool now holds four
    first = await keep.ingest_url(provider.url(f"/img/{owner}-a.png?w=8&h=8"), owner=owner)
    assert first.status == "stored"
    async with keep.repo.reads() as s:
        before = {int(p) for p in (await s.execute(text("SELECT pg_backend_pid()"))).scalars()}

    admin = await asyncpg.connect(postgres.dsn())
    try:
        killed = await admin.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
    finally:
        await admin.close()
    assert killed, "the pool held no connection to kill"
    await asyncio.sleep(0.3)  # the server's goodbye reaches the idle sockets

    # Reads and the write path both go on, each on a fresh connection.
    assert (await keep.get(first.id or "", owner=owner)).sha256 == first.sha256
    second = await keep.ingest_url(provider.url(f"/img/{owner}-b.png?w=9&h=9"), owner=owner)
    assert second.status == "stored", second.error
    async with keep.repo.reads() as s:
        after = int((await s.execute(text("SELECT pg_backend_pid()"))).scalar_one())
    assert after not in before


@pytest.mark.parametrize("backend", PG, ids=lambda b: b.id)
async def test_a_pool_too_small_to_spare_writes_through_sqlalchemy_in_one_statement(
    backend: Backend, keeps: KeepFactory, postgres: PostgresServer, provider: Provider, owner: str
) -> None:
    # With one pooled connection none is held for the writes: they run on SQLAlchemy's
    # own execution path, which once refused the one-statement finalize ("A value is
    # required for bind parameter") because its parameters were named like columns.
    url = await postgres.create_database_async()
    keep = await keeps.open(database_url=url, db_pool_size=1, db_pool_overflow=0)
    finalizes: list[str] = []

    @event.listens_for(keep.repo.engine.sync_engine, "before_cursor_execute")
    def seen(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().startswith("WITH twin AS"):
            finalizes.append(statement)

    first = await keep.ingest_url(provider.url(f"/img/{owner}-one.png?w=8&h=8"), owner=owner)
    assert first.status == "stored", first.error
    assert len(finalizes) == 1
    again = await keep.ingest_url(provider.url(f"/img/{owner}-one.png?w=8&h=8"), owner=owner)
    assert again.status == "deduplicated" and again.key == first.key
    many = await keep.store_many([png_bytes(77)] * 4, owner=owner, concurrency=4)
    assert sorted(r.status for r in many) == ["deduplicated"] * 3 + ["stored"]
    assert len({r.key for r in many}) == 1
