"""A task cancelled in the middle of a SQLite statement must not leave the database locked.

The fault suite found it: a job's progress flusher, cancelled while its transaction was
running a SELECT, had its connection invalidated and closed with that statement open.
Python's sqlite3 close then leaves SQLite a "zombie" connection that keeps its transaction
and the write lock until the cursor is garbage collected, and every writer, in every
process, failed with "database is locked" for minutes."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from mediakeep.db.engine import create_engine, session_factory

# A statement that runs long enough (~0.5 s) to be cancelled while it is in flight.
SLOW = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) "
    "SELECT count(*) FROM c"
)


def lock_is_free(path: Path) -> bool:
    other = sqlite3.connect(path, timeout=0.5, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError as exc:
        assert "locked" in str(exc)
        return False
    finally:
        other.close()


@pytest.mark.parametrize("statements", ["read", "write"])
async def test_cancelled_statement_releases_the_write_lock(tmp_path: Path, statements: str) -> None:
    path = tmp_path / "cancel.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    sessions = session_factory(engine)
    async with engine.begin() as c:
        await c.execute(text("CREATE TABLE t (x INTEGER)"))
    started = asyncio.Event()

    async def transaction() -> None:
        async with sessions.begin() as s:
            if statements == "write":
                await s.execute(text("INSERT INTO t VALUES (1)"))
            started.set()
            await s.execute(text(SLOW))
            await s.execute(text("INSERT INTO t VALUES (2)"))

    try:
        task = asyncio.create_task(transaction())
        await started.wait()
        await asyncio.sleep(0.1)  # the slow statement is now running in the driver thread
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The cancelled transaction's work is gone and the lock comes free once the
        # statement in flight ends; in the bug it stayed held until garbage collection.
        for _ in range(50):
            if await asyncio.to_thread(lock_is_free, path):
                break
        else:
            pytest.fail("the write lock is still held 25 s after the cancelled statement")
        async with sessions.begin() as s:
            assert (await s.execute(text("SELECT count(*) FROM t"))).scalar_one() == 0
            await s.execute(text("INSERT INTO t VALUES (3)"))  # and writers go on
    finally:
        await engine.dispose()


async def test_a_first_connection_waits_for_a_writer_to_switch_the_database_to_wal(
    tmp_path: Path,
) -> None:
    # Switching to WAL needs the exclusive lock, and SQLite refuses it at once, whatever
    # the busy timeout, while another connection is writing: processes starting together
    # on a new database failed this way (CI saw it in the racing-migrations test).
    path = tmp_path / "m.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("CREATE TABLE t (x)")
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO t VALUES (1)")
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:

        async def connect() -> str:
            async with engine.connect() as conn:
                return str((await conn.exec_driver_sql("PRAGMA journal_mode")).scalar())

        attempt = asyncio.create_task(connect())
        await asyncio.sleep(0.3)
        assert not attempt.done()  # still waiting, not failed
        writer.execute("COMMIT")
        assert await asyncio.wait_for(attempt, 10) == "wal"
    finally:
        writer.close()
        await engine.dispose()
