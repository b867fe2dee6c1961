"""Alembic environment: runs on the connection mediakeep hands it (see db/migrate.py)."""

from __future__ import annotations

from alembic import context

from mediakeep.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable through a bare `alembic` call
    raise RuntimeError("run migrations with `mediakeep db upgrade`")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
