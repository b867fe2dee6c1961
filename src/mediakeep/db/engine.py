"""Engine creation: SQLite tuned for concurrent writers; PostgreSQL checking for closed
sockets at checkout in place of pre-ping."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.ext.asyncio import AsyncSession as AsyncSession
from sqlalchemy.util import await_only

# Execution option that marks a connection's transactions as read-only (see tune_sqlite).
READ_ONLY = "mediakeep_read_only"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(
    url: str, *, pool_size: int = 10, max_overflow: int = 10, pool_timeout: float = 30.0
) -> AsyncEngine:
    if is_sqlite(url):
        db = make_url(url).database
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url,
            connect_args={"timeout": 30},
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
        )
        tune_sqlite(engine.sync_engine)
        return engine
    engine = create_async_engine(
        url, pool_size=pool_size, max_overflow=max_overflow, pool_timeout=pool_timeout
    )
    _drop_closed_connections(engine.sync_engine)
    return engine


def _drop_closed_connections(sync_engine: Engine) -> None:
    """Our stand-in for ``pool_pre_ping``. On asyncpg that ping is three round trips per
    checkout (BEGIN, an empty query, ROLLBACK, for pgbouncer's sake): six per stored file,
    more than the file's own writes, and ~0.9 ms of CPU. A server that restarts or drops a
    connection closes its socket, which asyncpg notices without asking; such a connection
    is replaced at checkout (SQLAlchemy retries with a fresh one)."""

    @event.listens_for(sync_engine, "checkout")
    def _on_checkout(_dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        driver = record.driver_connection
        if driver is not None and getattr(driver, "is_closed", lambda: False)():
            raise DisconnectionError("the server closed this connection")


# How long a connection keeps trying to put a new database into WAL mode.
_WAL_PATIENCE = 30.0


def _use_wal(dbapi_conn: Any, cur: Any) -> None:
    """WAL mode is a property of the database file, so once it is set a connection only
    has to read it. Setting it needs the exclusive lock, and SQLite answers "database is
    locked" at once, without waiting out the busy timeout, when another connection holds
    a lock at that moment: processes starting together on a new database, one of them
    already making the schema. So the setting is retried for a while."""
    cur.execute("PRAGMA journal_mode")
    if str(cur.fetchone()[0]).lower() == "wal":
        return
    deadline = time.monotonic() + _WAL_PATIENCE
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.fetchall()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            if isinstance(dbapi_conn, sqlite3.Connection):
                time.sleep(0.005)  # a thread of its own (the writer's engine)
            else:
                # The async engine connects on the event loop, inside SQLAlchemy's
                # greenlet bridge: wait there without blocking the loop.
                await_only(asyncio.sleep(0.005))


def tune_sqlite(sync_engine: Engine) -> None:
    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (see _on_begin).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        _use_wal(dbapi_conn, cur)
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(sync_engine, "invalidate")
    def _on_invalidate(dbapi_conn: Any, _record: Any, _exc: BaseException | None) -> None:
        # A task cancelled mid-statement gets its connection invalidated, and closed next.
        # Python's sqlite3 close with that statement still open leaves SQLite a "zombie"
        # connection that keeps its transaction, and with it the database's write lock,
        # until the cursor is garbage collected: every writer in every process then fails
        # with "database is locked". Rolling back first ends the transaction whatever
        # becomes of the cursor (aiosqlite runs it after the statement in flight).
        # Nothing may escape: raising here would skip the close that follows. A second
        # cancellation swallowed here is not lost: the exception that caused the
        # invalidation is still on its way out of the task.
        with contextlib.suppress(BaseException):
            dbapi_conn.rollback()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get(READ_ONLY):
            # WAL readers see a snapshot and never wait for the write lock: permanent
            # links and listings keep answering while ingests write.
            conn.exec_driver_sql("BEGIN")
        else:
            # Take the write lock up front: a read transaction that later writes cannot be
            # upgraded under contention and would fail with "database is locked".
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def read_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that only read. On SQLite their transactions do not take the write lock
    (every other transaction does, up front), so they must never write: a write would
    fail under contention instead of waiting its turn."""
    return async_sessionmaker(engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)
