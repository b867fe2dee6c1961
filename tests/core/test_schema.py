"""The schema is the same however a database got it: made fresh from the models (what
`migrate.upgrade` does to an empty database, without Alembic), through the whole Alembic
chain, or migrated from an older revision at start-up. A migration added without the
models following, or a model changed without a migration, fails here."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.schema import SchemaItem

from mediakeep.db import migrate
from mediakeep.db.engine import create_engine
from mediakeep.db.models import Base
from tests.core.helpers import loaded_after
from tests.support.postgres import PostgresServer

Databases = Callable[[], str]


@pytest.fixture(params=["sqlite", "postgres"])
async def databases(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Databases]:
    """A factory of empty databases of one kind, dropped afterwards."""
    made: list[str] = []
    pg: PostgresServer | None = (
        request.getfixturevalue("postgres") if request.param == "postgres" else None
    )

    def new() -> str:
        if pg is None:
            url = f"sqlite+aiosqlite:///{tmp_path / f'db{len(made)}.sqlite'}"
        else:
            url = pg.create_database()
        made.append(url)
        return url

    yield new
    if pg is not None:
        for url in made:
            await pg.drop_database_async(url)


async def _with_engine(url: str, fn: Callable[[AsyncEngine], Awaitable[Any]]) -> Any:
    engine = create_engine(url)
    try:
        return await fn(engine)
    finally:
        await engine.dispose()


def _alembic_upgrade(revision: str) -> Callable[[AsyncEngine], Awaitable[None]]:
    """Run the migrations themselves, as an old release of mediakeep did on every start."""

    async def run(engine: AsyncEngine) -> None:
        async with engine.connect() as conn:
            await conn.run_sync(lambda c: command.upgrade(migrate.alembic_config(c), revision))
            await conn.commit()

    return run


def _squash(sql: str | None) -> str:
    return re.sub(r"\s+", " ", sql or "").strip()


def dump(conn: Connection) -> dict[str, Any]:
    """Everything the schema says, as plain data: tables with their columns in order
    (type, nullability, server default), primary keys, indexes, unique constraints,
    foreign keys (with their ON DELETE), check constraints, views and sequences, and the
    revision Alembic would read."""
    insp = inspect(conn)
    tables: dict[str, Any] = {}
    for name in sorted(insp.get_table_names()):
        tables[name] = {
            "columns": [
                (
                    c["name"],
                    str(c["type"].compile(dialect=conn.dialect)),
                    c["nullable"],
                    _squash(c.get("default")),
                )
                for c in insp.get_columns(name)
            ],
            "primary_key": insp.get_pk_constraint(name),
            "indexes": sorted(insp.get_indexes(name), key=lambda i: str(i["name"])),
            "unique": sorted(insp.get_unique_constraints(name), key=lambda u: str(u["name"])),
            "foreign_keys": sorted(
                insp.get_foreign_keys(name),
                key=lambda f: (f["constrained_columns"], f["referred_table"]),
            ),
            "checks": sorted(insp.get_check_constraints(name), key=lambda c: str(c["name"])),
        }
    views = {v: _squash(insp.get_view_definition(v)) for v in sorted(insp.get_view_names())}
    sequences = sorted(insp.get_sequence_names()) if conn.dialect.name == "postgresql" else []
    revision = [r[0] for r in conn.exec_driver_sql("SELECT version_num FROM alembic_version")]
    return {"tables": tables, "views": views, "sequences": sequences, "revision": revision}


async def _dump(engine: AsyncEngine) -> dict[str, Any]:
    async with engine.connect() as conn:
        return await conn.run_sync(dump)


def _model_diff(conn: Connection) -> list[Any]:
    def for_this_dialect(
        obj: SchemaItem, _name: str | None, _type: str, _reflected: bool, _other: object
    ) -> bool:
        # Alembic ignores ddl_if(): the PostgreSQL-only GIN index is not missing on SQLite.
        only = getattr(obj, "_ddl_if", None)
        return only is None or only.dialect in (None, conn.dialect.name)

    ctx = MigrationContext.configure(
        conn,
        opts={
            "compare_type": True,
            "compare_server_default": True,
            "include_object": for_this_dialect,
        },
    )
    return list(compare_metadata(ctx, Base.metadata))


async def test_every_way_to_the_newest_revision_makes_the_same_schema(
    databases: Databases,
) -> None:
    chain, fresh, older = databases(), databases(), databases()
    await _with_engine(chain, _alembic_upgrade("head"))
    await _with_engine(fresh, migrate.upgrade)
    await _with_engine(older, _alembic_upgrade("0004"))
    await _with_engine(older, migrate.upgrade)  # an older database still migrates

    by_chain = await _with_engine(chain, _dump)
    assert by_chain["revision"] == [migrate.HEAD]
    assert by_chain == await _with_engine(fresh, _dump)
    assert by_chain == await _with_engine(older, _dump)

    async def model_diff(engine: AsyncEngine) -> list[Any]:
        async with engine.connect() as conn:
            return await conn.run_sync(_model_diff)

    # Alembic's own comparison of the migrated database with the models, as a second pair
    # of eyes on what the dump may not cover.
    assert await _with_engine(chain, model_diff) == []


async def test_starts_racing_on_an_empty_database_make_it_once(databases: Databases) -> None:
    url, reference = databases(), databases()
    engines = [create_engine(url) for _ in range(3)]
    try:
        await asyncio.gather(*(migrate.upgrade(e) for e in engines))
        made = await _dump(engines[0])
    finally:
        for e in engines:
            await e.dispose()
    await _with_engine(reference, migrate.upgrade)
    assert made == await _with_engine(reference, _dump)


def test_an_empty_database_is_made_without_loading_alembic(databases: Databases) -> None:
    # Alembic and Mako are ~0.2 CPU-s of start-up for every first run of the CLI.
    url = databases()
    code = (
        "import asyncio, sys\n"
        "from mediakeep.db import migrate\n"
        "from mediakeep.db.engine import create_engine\n"
        f"engine = create_engine({url!r})\n"
        "async def main():\n"
        "    await migrate.upgrade(engine)\n"
        "    await migrate.upgrade(engine)\n"
        "    await engine.dispose()\n"
        "asyncio.run(main())\n"
    )
    assert loaded_after(code, ("alembic", "mako")) == []
