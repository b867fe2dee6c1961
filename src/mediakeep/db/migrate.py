"""Bring a database to the newest schema (SQLite or PostgreSQL, on an async engine).

Three cases, cheapest first: a database already at ``HEAD`` answers one query; an empty
one gets the schema straight from the models (``db.models``) and Alembic's version row,
in one transaction; only a database at an older revision runs the Alembic migrations.
Loading Alembic and its script directory costs ~0.2 s of CPU, which every first run of
the CLI and every fresh test database would otherwise pay. tests/core/test_schema.py
checks that both ways make the same schema."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table, inspect
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest revision in migrations/versions (a test keeps the two in step).
HEAD = "0005"
# Alembic's version table, as Alembic makes it (alembic.ddl.impl): a database made from
# the models is then indistinguishable from one the migrations made.
VERSION_TABLE = Table(
    "alembic_version",
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)
# Held while migrating: several processes may start at once on one PostgreSQL database.
_PG_LOCK = 727465


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


async def _at_head(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        try:
            rows = (await conn.exec_driver_sql("SELECT version_num FROM alembic_version")).all()
        except sa_exc.DBAPIError:
            return False  # a new database: no version table yet
        finally:
            await conn.rollback()
    return [r[0] for r in rows] == [HEAD]


def _state(conn: Connection) -> Literal["empty", "head", "older"]:
    insp = inspect(conn)
    names = insp.get_table_names()
    if not names and not insp.get_view_names():
        return "empty"
    if VERSION_TABLE.name in names:
        rows = conn.execute(VERSION_TABLE.select()).scalars().all()
        if list(rows) == [HEAD]:
            return "head"  # another process got there while we waited for the lock
    return "older"


def _create(conn: Connection) -> None:
    from .models import Base

    # The database was just seen empty, in this transaction: no table to check for.
    Base.metadata.create_all(conn, checkfirst=False)
    VERSION_TABLE.create(conn, checkfirst=False)
    conn.execute(VERSION_TABLE.insert().values(version_num=HEAD))


def _to_head(conn: Connection) -> None:
    state = _state(conn)
    if state == "empty":
        _create(conn)
    elif state == "older":
        _alembic_upgrade(conn, "head")


def _alembic_upgrade(conn: Connection, revision: str) -> None:
    from alembic import command

    command.upgrade(alembic_config(conn), revision)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    to_head = revision in ("head", HEAD)
    if to_head and await _at_head(engine):
        return
    async with engine.connect() as conn:
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            # One process migrates, the others wait for it here, then find it done.
            await conn.exec_driver_sql(f"SELECT pg_advisory_lock({_PG_LOCK})")
        try:
            # On SQLite the first statement begins the transaction with BEGIN IMMEDIATE
            # (db.engine): the check and what follows hold the write lock together.
            if to_head:
                await conn.run_sync(_to_head)
            else:
                await conn.run_sync(_alembic_upgrade, revision)
            await conn.commit()
        finally:
            if postgres:
                await conn.exec_driver_sql(f"SELECT pg_advisory_unlock({_PG_LOCK})")
                await conn.commit()


async def current(engine: AsyncEngine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    def run(conn: Connection) -> str | None:
        return MigrationContext.configure(conn).get_current_revision()

    async with engine.connect() as conn:
        return await conn.run_sync(run)
