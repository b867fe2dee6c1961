"""SQLAlchemy statements compiled once, run on the driver's own connection.

Every stored file makes two write transactions. Through SQLAlchemy's execution path each
statement cost ~0.15 ms of CPU before SQLite saw it (cache-key lookup, execution context,
parameter processing, result wrapping): three quarters of a file's database CPU, and on
2 cores every millisecond is taken from the object store. Here the statements are still
SQLAlchemy constructs built from the models (so they follow the schema), compiled once per
dialect; running one is the driver call plus the same bind and result processors
SQLAlchemy would apply, so what is written and read back is identical.

Only the ingest's hot write path uses this; everything else goes through SQLAlchemy.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.util import await_only

Processor = Callable[[Any], Any] | None


@dataclass(frozen=True)
class Compiled:
    sql: str
    order: tuple[str, ...]
    defaults: dict[str, Any]
    binds: tuple[tuple[str, Processor], ...]
    results: tuple[Processor, ...]
    returns_rows: bool

    def parameters(self, values: dict[str, Any]) -> tuple[Any, ...]:
        out = []
        defaults = self.defaults
        for name, process in self.binds:
            value = values[name] if name in values else defaults[name]
            out.append(value if process is None or value is None else process(value))
        return tuple(out)

    def rows(self, raw: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
        if not any(self.results):
            return [tuple(r) for r in raw]
        procs = self.results
        return [
            tuple(v if p is None or v is None else p(v) for p, v in zip(procs, r, strict=True))
            for r in raw
        ]


_compiled: dict[tuple[int, str, str], tuple[ClauseElement, Compiled]] = {}


def compile_once(stmt: ClauseElement, dialect: Dialect) -> Compiled:
    """``stmt`` compiled for ``dialect``; statements are long-lived module constants, so
    they are cached by identity (the statement is kept, so its id cannot be reused)."""
    key = (id(stmt), dialect.name, dialect.driver)
    hit = _compiled.get(key)
    if hit is not None:
        return hit[1]
    c = cast(SQLCompiler, stmt.compile(dialect=dialect))
    order = tuple(c.positiontup or ())
    binds = c.binds
    defaults = {name: b.value for name, b in binds.items() if not b.required}
    processors = tuple(
        (name, binds[name].type.dialect_impl(dialect).bind_processor(dialect)) for name in order
    )
    columns = getattr(stmt, "selected_columns", None)
    results: tuple[Processor, ...] = ()
    if columns is not None:
        results = tuple(_result_processor(col.type, dialect) for col in columns)
    done = Compiled(
        sql=c.string,
        order=order,
        defaults=defaults,
        binds=processors,
        results=results,
        returns_rows=columns is not None,
    )
    _compiled[key] = (stmt, done)
    return done


def _result_processor(type_: Any, dialect: Dialect) -> Processor:
    try:
        return cast(Processor, type_.dialect_impl(dialect).result_processor(dialect, None))
    except TypeError:
        # asyncpg's numeric types pick a converter by the column's type code, which only a
        # cursor knows; asyncpg already hands back Python floats, so none is needed.
        return None


@dataclass
class Result:
    """The part of SQLAlchemy's Result the write functions use."""

    rows: list[tuple[Any, ...]]
    rowcount: int

    def first(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None

    def scalar_one(self) -> Any:
        if len(self.rows) != 1:
            raise sa_exc.NoResultFound("expected exactly one row")
        return self.rows[0][0]


class _Exec:
    """Transaction control shared by both executors; ``_run`` and ``_in_transaction``
    are the driver's."""

    BEGIN = "BEGIN"

    def __init__(self, conn: Any, dialect: Dialect) -> None:
        self._conn = conn
        self.dialect = dialect

    def begin(self) -> None:
        self._run(self.BEGIN)

    def commit(self) -> None:
        self._run("COMMIT")

    def rollback(self) -> None:
        if self._in_transaction():
            self._run("ROLLBACK")

    def _run(self, sql: str) -> None:
        raise NotImplementedError

    def _in_transaction(self) -> bool:
        raise NotImplementedError


class SqliteExec(_Exec):
    """Statements on a stdlib sqlite3 connection (autocommit mode: the caller begins)."""

    # Take the write lock up front, as every SQLite write transaction here does.
    BEGIN = "BEGIN IMMEDIATE"

    def execute(self, stmt: ClauseElement, values: dict[str, Any] | None = None) -> Result:
        c = compile_once(stmt, self.dialect)
        params = c.parameters(values or {})
        try:
            cur = self._conn.execute(c.sql, params)
            raw = cur.fetchall() if c.returns_rows else []
        except sqlite3.Error as exc:
            raise _wrap(c.sql, params, exc, sqlite3.Error) from exc
        return Result(c.rows(raw), cur.rowcount)

    def _in_transaction(self) -> bool:
        return bool(self._conn.in_transaction)

    def _run(self, sql: str) -> None:
        try:
            self._conn.execute(sql)
        except sqlite3.Error as exc:
            raise _wrap(sql, (), exc, sqlite3.Error) from exc


class AsyncpgExec(_Exec):
    """Statements on an asyncpg connection, called from synchronous code running inside
    SQLAlchemy's greenlet bridge (``greenlet_spawn``), as its own asyncpg adapter does."""

    def execute(self, stmt: ClauseElement, values: dict[str, Any] | None = None) -> Result:
        c = compile_once(stmt, self.dialect)
        params = c.parameters(values or {})
        try:
            if c.returns_rows:
                records = await_only(self._conn.fetch(c.sql, *params))
                return Result(c.rows(records), len(records))
            status = await_only(self._conn.execute(c.sql, *params))
        except Exception as exc:
            raise _wrap_asyncpg(c.sql, params, exc) from exc
        # "UPDATE 1", "INSERT 0 1", "DELETE 3": the count is the last word.
        count = status.rsplit(" ", 1)[-1]
        return Result([], int(count) if count.isdigit() else -1)

    def _in_transaction(self) -> bool:
        return bool(self._conn.is_in_transaction())

    def _run(self, sql: str) -> None:
        try:
            await_only(self._conn.execute(sql))
        except Exception as exc:
            raise _wrap_asyncpg(sql, (), exc) from exc


def _wrap(sql: str, params: Any, exc: Exception, base: type[Exception]) -> Exception:
    # The class SQLAlchemy itself would raise (IntegrityError, OperationalError, ...), so
    # callers and database_unavailable() tell conflicts from outages the same way.
    return sa_exc.DBAPIError.instance(sql, params, exc, base)


def _wrap_asyncpg(sql: str, params: Any, exc: Exception) -> Exception:
    import asyncpg  # type: ignore[import-untyped]

    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return sa_exc.IntegrityError(sql, params, exc)
    lost = (
        asyncpg.PostgresConnectionError,
        asyncpg.InterfaceError,
        asyncpg.exceptions.ConnectionDoesNotExistError,
        asyncpg.exceptions.CannotConnectNowError,
        asyncpg.exceptions.AdminShutdownError,
        ConnectionError,
        OSError,
        TimeoutError,
    )
    if isinstance(exc, lost):
        return sa_exc.OperationalError(sql, params, exc, connection_invalidated=True)
    if isinstance(exc, asyncpg.PostgresError):
        return sa_exc.DatabaseError(sql, params, exc)
    return exc
