"""Migration 0005 goes back down cleanly, and up again. (That the migrations make exactly
what the models describe is tests/core/test_schema.py's.)"""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from mediakeep.db import migrate
from mediakeep.db.engine import create_engine
from tests.jobs.conftest import Keeps

TABLES = {"jobs", "job_items", "job_events", "generations", "generation_media"}


async def test_0005_downgrades_and_upgrades_again(keeps: Keeps) -> None:
    engine = create_engine(keeps.db)
    try:
        # A new database gets the schema from the models, stamped 0005: Alembic must be
        # able to take it down from there, as from a database it migrated itself.
        await migrate.upgrade(engine)

        def down(conn: Connection) -> set[str]:
            command.downgrade(migrate.alembic_config(conn), "0004")
            return set(inspect(conn).get_table_names())

        async with engine.connect() as conn:
            left = await conn.run_sync(down)
            await conn.commit()
        assert not TABLES & left
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert names >= TABLES
    finally:
        await engine.dispose()


def test_the_start_up_shortcut_knows_the_newest_migration() -> None:
    # `upgrade` skips Alembic when the database already records migrate.HEAD: a new
    # migration that forgot to move HEAD would never be applied to existing databases.
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(migrate.alembic_config()).get_heads()
    assert heads == [migrate.HEAD]
