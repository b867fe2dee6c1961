"""The two write transactions every stored file makes (record the intent, then finalize),
and where they run.

They are written once, as plain synchronous functions of an executor (``raw.SqliteExec``
or ``raw.AsyncpgExec``: SQLAlchemy statements compiled once, run on the driver's own
connection), because that lets each backend run a whole transaction the cheapest way it
has:

- SQLite: in one writer thread on the stdlib driver. Through aiosqlite every statement,
  BEGIN and COMMIT was a round trip between the event loop and the driver's thread (about
  ten per file), and concurrent writers took turns through SQLite's busy-wait. Here a
  transaction is one hand-off, and writers queue in order.
- PostgreSQL: on asyncpg, through SQLAlchemy's greenlet bridge; asyncpg needs no thread.
  The intent is one statement, and so is the finalize of a file whose bytes are new to
  its owner (``finalize_new``): one round trip each.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from sqlalchemy import bindparam, create_engine, exists, func, insert, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import ClauseElement
from sqlalchemy.util import greenlet_spawn

from ..errors import NotFound
from .engine import tune_sqlite
from .models import Asset, Slot, StoredObject, new_id
from .raw import AsyncpgExec, Result, SqliteExec


class Exec(Protocol):
    """What the write functions need of a connection."""

    dialect: Dialect

    def execute(self, stmt: ClauseElement, values: dict[str, Any] | None = None) -> Result: ...


T = TypeVar("T")

_FIND_TWIN = select(StoredObject.id, StoredObject.key).where(
    StoredObject.owner == bindparam("b_owner"),
    StoredObject.bucket == bindparam("b_bucket"),
    StoredObject.sha256 == bindparam("b_sha256"),
    StoredObject.status == "stored",
)
# SQLite serialises writers with BEGIN IMMEDIATE; PostgreSQL needs row locks.
_FIND_TWIN_LOCKED = _FIND_TWIN.with_for_update()
_TWIN_FACTS = (
    select(Asset.media_info, Asset.width, Asset.height, Asset.duration)
    .where(Asset.object_id == bindparam("object_id"), Asset.status == "stored")
    .limit(1)
)
# Parameters prefixed b_: a bound name equal to a column name clashes with the SET clause
# (SQLAlchemy's execution takes such a key for a value of that column in every UPDATE of
# the statement, CTEs included: "A value is required for bind parameter").
_MARK_OBJECT_STORED = (
    update(StoredObject)
    .where(StoredObject.id == bindparam("b_id"), StoredObject.status == "pending")
    .values(
        sha256=bindparam("b_sha256"),
        size=bindparam("b_size"),
        status="stored",
        updated_at=bindparam("b_now"),
    )
)
_MARK_OBJECT_REDUNDANT = (
    update(StoredObject)
    .where(StoredObject.id == bindparam("b_id"), StoredObject.status == "pending")
    .values(status="deleting", updated_at=bindparam("b_now"))
)
_FINISHED_FIELDS = (
    "object_id",
    "sha256",
    "size",
    "status",
    "updated_at",
    "media_info",
    "width",
    "height",
    "duration",
    "version",
)
_FINISH_ASSET = (
    update(Asset)
    .where(Asset.id == bindparam("b_id"))
    .values({name: bindparam(f"b_{name}") for name in _FINISHED_FIELDS})
)
_SLOT_WHERE = (
    Slot.owner == bindparam("b_owner"),
    Slot.collection == bindparam("b_collection"),
    Slot.name == bindparam("b_name"),
)
_SLOT_LATEST = select(Slot.latest_version).where(*_SLOT_WHERE)
_SLOT_LATEST_LOCKED = _SLOT_LATEST.with_for_update()
_SLOT_BUMP = (
    update(Slot)
    .where(*_SLOT_WHERE)
    .values(latest_version=bindparam("b_latest"), updated_at=bindparam("b_now"))
)
_SLOT_POINT = (
    update(Slot)
    .where(*_SLOT_WHERE)
    .values(current_asset_id=bindparam("b_asset"), updated_at=bindparam("b_now"))
)


def insert_pending(c: Exec, object_row: dict[str, Any], asset_row: dict[str, Any]) -> None:
    if c.dialect.name == "postgresql":
        # One statement (the object's insert as a data-modifying CTE), atomic on its own:
        # run with autocommit it is a single round trip instead of five (BEGIN, two
        # inserts, COMMIT and their waits), on the throughput path of every file.
        stmt = _pending_pair(tuple(object_row), tuple(asset_row))
        c.execute(stmt, {**_prefixed("o_", object_row), **_prefixed("a_", asset_row)})
        return
    c.execute(_insert_row(StoredObject, tuple(object_row)), object_row)
    c.execute(_insert_row(Asset, tuple(asset_row)), asset_row)


def _values(table: Any, prefix: str, cols: tuple[str, ...]) -> dict[str, Any]:
    return {c: bindparam(prefix + c, type_=table.c[c].type) for c in cols}


@functools.cache
def _insert_row(model: Any, cols: tuple[str, ...]) -> Any:
    # Built once per column set, with every column named: the statement is compiled once
    # and reused (see raw.compile_once), so it cannot depend on the parameters it is given.
    return insert(model).values(_values(model.__table__, "", cols))


def _prefixed(prefix: str, row: dict[str, Any]) -> dict[str, Any]:
    return {prefix + k: v for k, v in row.items()}


@functools.cache
def _pending_pair(object_cols: tuple[str, ...], asset_cols: tuple[str, ...]) -> Any:
    # Built once per column set: a statement made afresh per call costs more CPU to
    # compile-cache than the round trips it saves.
    obj = insert(StoredObject).values(_values(StoredObject.__table__, "o_", object_cols))
    return insert(Asset).values(_values(Asset.__table__, "a_", asset_cols)).add_cte(obj.cte())


def finalize(
    c: Exec,
    *,
    key: str,
    bucket: str,
    row: dict[str, Any],
    values: dict[str, Any],
    lock_rows: bool,
) -> tuple[str, str, str | None]:
    """Mark the pending write (``row``: the asset row as inserted) stored, or point the
    asset at an identical object its owner already has. Returns (object id, key, key to
    discard); ``values`` is completed."""
    existing = c.execute(
        _FIND_TWIN_LOCKED if lock_rows else _FIND_TWIN,
        {"b_owner": row["owner"], "b_bucket": bucket, "b_sha256": values["sha256"]},
    ).first()
    now = values["updated_at"]
    asset_id = row["id"]
    object_id = pending_object = row["object_id"]
    discard: str | None = None
    if existing is None:
        done = c.execute(
            _MARK_OBJECT_STORED,
            {
                "b_id": object_id,
                "b_sha256": values["sha256"],
                "b_size": values["size"],
                "b_now": now,
            },
        )
    else:
        # Ours is redundant: its key is deleted, and the asset points at the twin.
        discard = key
        object_id, key = existing[0], existing[1]
        # Same bytes, same facts: take what was learnt (e.g. by a video probe).
        twin = c.execute(_TWIN_FACTS, {"object_id": object_id}).first()
        if twin is not None:
            for name, value in zip(
                ("media_info", "width", "height", "duration"), twin, strict=True
            ):
                if value:
                    values[name] = value
        done = c.execute(_MARK_OBJECT_REDUNDANT, {"b_id": pending_object, "b_now": now})
    if done.rowcount != 1:
        raise NotFound("the pending write disappeared (swept?)")
    slot = row["slot"]
    if slot is not None:
        names = {"owner": row["owner"], "collection": row["collection"], "name": slot}
        values["version"] = _next_version(c, names, now, lock_rows)
    values["object_id"] = object_id
    c.execute(_FINISH_ASSET, {"b_id": asset_id, **{f"b_{k}": values[k] for k in _FINISHED_FIELDS}})
    if slot is not None:
        where = {f"b_{k}": v for k, v in names.items()}
        c.execute(_SLOT_POINT, {**where, "b_asset": asset_id, "b_now": now})
    return object_id, key, discard


def _finalize_new_statement() -> Any:
    """PostgreSQL: the whole finalize of a file whose bytes its owner does not have yet,
    as one statement (data-modifying CTEs, atomic on their own). It changes nothing if a
    twin exists; then the caller runs ``finalize``, which handles that case."""
    twin = _FIND_TWIN_LOCKED.cte("twin")
    mark = (
        update(StoredObject)
        .where(
            StoredObject.id == bindparam("b_id"),
            StoredObject.status == "pending",
            ~exists(select(twin.c.id)),
        )
        .values(
            sha256=bindparam("b_sha256"),
            size=bindparam("b_size"),
            status="stored",
            updated_at=bindparam("b_now"),
        )
        .returning(StoredObject.id)
        .cte("mark")
    )
    finish = (
        update(Asset)
        .where(Asset.id == bindparam("b_asset"), exists(select(mark.c.id)))
        .values({name: bindparam(f"b_{name}") for name in _FINISHED_FIELDS})
        .returning(Asset.id)
        .cte("finish")
    )
    return select(
        select(func.count()).select_from(twin).scalar_subquery(),
        select(func.count()).select_from(mark).scalar_subquery(),
        select(func.count()).select_from(finish).scalar_subquery(),
    )


_FINALIZE_NEW = _finalize_new_statement()


def finalize_new(
    c: Exec, *, key: str, bucket: str, row: dict[str, Any], values: dict[str, Any]
) -> tuple[str, str, None] | None:
    """``finalize`` in one round trip, for PostgreSQL and a write outside any slot; None
    when the owner already has these bytes (nothing was changed: run ``finalize``)."""
    object_id = row["object_id"]
    values["object_id"] = object_id
    params = {
        "b_owner": row["owner"],
        "b_bucket": bucket,
        "b_id": object_id,
        "b_sha256": values["sha256"],
        "b_size": values["size"],
        "b_now": values["updated_at"],
        "b_asset": row["id"],
        **{f"b_{k}": values[k] for k in _FINISHED_FIELDS if k not in ("sha256", "size")},
    }
    found = c.execute(_FINALIZE_NEW, params).first()
    assert found is not None
    twins, marked, finished = found
    if twins:
        return None
    if marked != 1 or finished != 1:
        raise NotFound("the pending write disappeared (swept?)")
    return object_id, key, None


def _slot_create(insert_: Any) -> Any:
    return (
        insert_(Slot)
        .values(
            id=bindparam("b_id"),
            owner=bindparam("b_owner"),
            collection=bindparam("b_collection"),
            name=bindparam("b_name"),
            latest_version=0,
            created_at=bindparam("b_now"),
            updated_at=bindparam("b_now"),
        )
        .on_conflict_do_nothing(index_elements=["owner", "collection", "name"])
    )


_SLOT_CREATE_PG = _slot_create(pg_insert)
_SLOT_CREATE_SQLITE = _slot_create(sqlite_insert)


def _next_version(c: Exec, names: dict[str, Any], now: Any, pg: bool) -> int:
    """Reserve the slot's next version number. The slot row is created if missing (no race:
    ON CONFLICT DO NOTHING) and then locked, so concurrent writers number their versions
    one after another."""
    where = {f"b_{k}": v for k, v in names.items()}
    c.execute(
        _SLOT_CREATE_PG if pg else _SLOT_CREATE_SQLITE, {**where, "b_id": new_id(), "b_now": now}
    )
    latest = int(c.execute(_SLOT_LATEST_LOCKED if pg else _SLOT_LATEST, where).scalar_one()) + 1
    c.execute(_SLOT_BUMP, {**where, "b_latest": latest, "b_now": now})
    return latest


async def _settle(done: asyncio.Future[Any]) -> None:
    while not done.done():
        try:
            await asyncio.wait({done})
        except asyncio.CancelledError:
            continue  # a transaction takes milliseconds; its outcome must be known first
    if not done.cancelled():
        done.exception()  # retrieved: the caller was cancelled and will not look


class WriteRunner:
    """Runs a synchronous write transaction (``fn(executor, ...)``) to completion."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._async = engine
        self._sync: Engine | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._conn: Any = None  # the writer thread's pooled SQLite connection
        self._held: _HeldConnections | None = None
        url = engine.url
        self.dialect = engine.dialect
        # Half the pool at most stays with the writes: reads and the rest need the others.
        hold = min(4, getattr(engine.pool, "size", lambda: 0)() // 2)
        if engine.dialect.driver == "asyncpg" and hold > 0:
            self._held = _HeldConnections(engine, hold)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            self._sync = create_engine(
                url.set(drivername="sqlite"), connect_args={"timeout": 30}, pool_size=1
            )
            tune_sqlite(self._sync)
            self.dialect = self._sync.dialect
            # One thread: SQLite has one writer at a time anyway, and in-process writers
            # now queue in order instead of sleeping in the busy handler.
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="mk-sqlite-writer")

    async def run(self, fn: Callable[..., T], /, *, single: bool = False, **kwargs: Any) -> T:
        """``single``: ``fn`` makes one statement, atomic by itself, so where a round
        trip costs (PostgreSQL) it runs without BEGIN and COMMIT."""
        done: asyncio.Future[T]
        if self._sync is not None and self._thread is not None:
            loop = asyncio.get_running_loop()
            done = loop.run_in_executor(self._thread, self._in_thread, fn, kwargs)
        else:
            done = asyncio.ensure_future(self._in_loop(fn, kwargs, single))
        try:
            return await asyncio.shield(done)
        except asyncio.CancelledError:
            # A transaction, once handed over, runs to its end whatever the caller does.
            # Wait for that end, so that what the caller does next (a pipeline rolls back)
            # sees the outcome instead of racing it: a rollback that deleted the object
            # just before a queued finalize committed would lose the file.
            await _settle(done)
            raise

    async def _in_loop(self, fn: Callable[..., T], kwargs: dict[str, Any], single: bool) -> T:
        if self._held is None:
            # Another async driver, or a pool too small to spare a connection:
            # SQLAlchemy's own execution path.
            async with self._async.connect() as conn:
                if single:
                    await conn.execution_options(isolation_level="AUTOCOMMIT")
                    return await conn.run_sync(lambda sync: fn(sync, **kwargs))
                async with conn.begin():
                    return await conn.run_sync(lambda sync: fn(sync, **kwargs))
        pooled = await self._held.acquire()
        broken = False
        try:
            ex = AsyncpgExec(pooled.driver_connection, self._async.dialect)
            return await greenlet_spawn(_transact, ex, fn, kwargs, not single)
        except sa_exc.DBAPIError as exc:
            broken = exc.connection_invalidated
            raise
        except BaseException:
            # Cut off mid-statement (cancelled, a bug): the connection's state is unknown.
            broken = True
            raise
        finally:
            await self._held.release(pooled, broken)

    def _in_thread(self, fn: Callable[..., T], kwargs: dict[str, Any]) -> T:
        assert self._sync is not None
        if self._conn is None:
            self._conn = self._sync.raw_connection()
        ex = SqliteExec(self._conn.driver_connection, self.dialect)
        try:
            return _transact(ex, fn, kwargs, True)
        except sa_exc.DBAPIError as exc:
            if exc.connection_invalidated or _connection_broken(self._conn.driver_connection):
                self._drop_connection()
            raise

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.invalidate()

    @property
    def one_statement_finalize(self) -> bool:
        """Whether ``finalize_new`` runs here: on PostgreSQL, on the driver's connection
        or through SQLAlchemy's own path alike."""
        return self.dialect.name == "postgresql"

    async def aclose(self) -> None:
        if self._held is not None:
            await self._held.close()
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        if self._thread is not None:
            self._thread.submit(self._release).result()
            self._thread.shutdown(wait=True)
            self._thread = None
        if self._sync is not None:
            self._sync.dispose()
            self._sync = None

    def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class _HeldConnections:
    """PostgreSQL connections the write path keeps checked out of the engine's pool.

    A checkout and return through SQLAlchemy's async pool (its greenlet hops, events and
    reset-on-return) cost more CPU than the write itself: ~0.6 ms per transaction, two per
    file. These few stay out; one the server has closed is replaced when next taken, as
    the engine's own checkout does (engine._drop_closed_connections), and one that failed
    mid-use is invalidated."""

    def __init__(self, engine: AsyncEngine, limit: int) -> None:
        self._engine = engine
        self._limit = limit
        self._idle: list[Any] = []
        self._count = 0
        self._freed = asyncio.Condition()

    async def acquire(self) -> Any:
        while True:
            while self._idle:
                pooled = self._idle.pop()
                if not pooled.driver_connection.is_closed():
                    return pooled
                await self._discard(pooled)
            if self._count < self._limit:
                self._count += 1
                try:
                    return await self._engine.raw_connection()
                except BaseException:
                    self._count -= 1
                    raise
            async with self._freed:
                await self._freed.wait_for(lambda: bool(self._idle) or self._count < self._limit)

    async def release(self, pooled: Any, broken: bool) -> None:
        if broken:
            await self._discard(pooled)
        else:
            self._idle.append(pooled)
        async with self._freed:
            self._freed.notify()

    async def _discard(self, pooled: Any) -> None:
        self._count -= 1
        with contextlib.suppress(Exception):
            await greenlet_spawn(pooled.invalidate)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for pooled in idle:
            self._count -= 1
            with contextlib.suppress(Exception):
                await greenlet_spawn(pooled.close)


def _transact(
    ex: SqliteExec | AsyncpgExec, fn: Callable[..., T], kwargs: dict[str, Any], tx: bool
) -> T:
    if not tx:
        return fn(ex, **kwargs)
    ex.begin()
    try:
        result = fn(ex, **kwargs)
        ex.commit()
    except BaseException:
        # The connection may be gone; then so is the transaction, and the error that
        # brought us here is the one to report.
        with contextlib.suppress(Exception):
            ex.rollback()
        raise
    return result


def _connection_broken(conn: Any) -> bool:
    """A SQLite connection left inside a transaction it could not roll back is unusable."""
    try:
        return bool(conn.in_transaction)
    except Exception:
        return True
