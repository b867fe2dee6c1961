"""One maintenance sweep at a time across every process that shares the database: a
PostgreSQL advisory lock (also across machines), or a file lock next to a SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

# Distinct from the migration lock (727465, db/migrate.py).
MAINTENANCE_LOCK = 727466


@contextlib.asynccontextmanager
async def maintenance_lock(
    engine: AsyncEngine, fallback_dir: Path, key: int = MAINTENANCE_LOCK
) -> AsyncIterator[bool]:
    """Yields True when this process holds the lock, False when another one does. Never
    waits: a sweep that finds another one running simply skips its turn."""
    if engine.dialect.name == "postgresql":
        async with _pg_lock(engine, key) as held:
            yield held
        return
    with _file_lock(_lock_file(engine, fallback_dir, key)) as held:
        yield held


def _lock_file(engine: AsyncEngine, fallback_dir: Path, key: int) -> Path:
    db = make_url(str(engine.url)).database
    # Next to the database file: every process that shares the database shares the lock.
    folder = Path(db).resolve().parent if db and db != ":memory:" else fallback_dir
    return folder / f"mediakeep-maintenance-{key}.lock"


@contextlib.asynccontextmanager
async def _pg_lock(engine: AsyncEngine, key: int) -> AsyncIterator[bool]:
    # A session-level lock lives as long as this connection: should the process die, the
    # server drops it with the connection, so a crash never leaves the lock behind.
    async with engine.connect() as conn:
        held = bool(await conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}))
        await conn.commit()
        try:
            yield held
        finally:
            if held:
                await asyncio.shield(_pg_unlock(conn, key))


async def _pg_unlock(conn: AsyncConnection, key: int) -> None:
    await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    await conn.commit()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[bool]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            # flock is released by the kernel when the process dies: no stale locks.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
