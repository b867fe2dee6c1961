"""The per-file writes run SQLAlchemy statements on the driver's own connection: what they
write must read back through SQLAlchemy exactly as if SQLAlchemy had written it, and
driver errors must surface as SQLAlchemy's error classes."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from mediakeep.db import writes
from mediakeep.db.models import Asset, Base, StoredObject
from mediakeep.db.raw import SqliteExec


def test_rows_written_raw_read_back_through_the_orm(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'raw.db'}")
    Base.metadata.create_all(engine)
    conn = sqlite3.connect(tmp_path / "raw.db", isolation_level=None)
    ex = SqliteExec(conn, engine.dialect)
    now = datetime(2026, 12, 3, 14, 30, 5, 123456, tzinfo=UTC)
    obj = {
        "id": "o1",
        "owner": "alice",
        "bucket": "b",
        "key": "alice/c/a1.png",
        "content_type": "image/png",
        "status": "pending",
        "created_at": now,
        "updated_at": now,
    }
    asset = {
        "id": "a1",
        "owner": "alice",
        "collection": "c",
        "slot": None,
        "visibility": "private",
        "status": "pending",
        "object_id": "o1",
        "content_type": "image/png",
        "media_kind": "image",
        "width": 10,
        "height": 20,
        "duration": 1.5,
        "source_url": "https://x/y.png",
        "provider": "fal-ai",
        "provider_metadata": {"prompt": "a lighthouse", "seed": 7, "nested": {"é": [1, 2]}},
        "created_at": now,
        "updated_at": now,
    }
    ex.begin()
    writes.insert_pending(ex, obj, asset)
    ex.commit()
    with Session(engine) as s:
        got = s.execute(select(Asset)).scalar_one()
        assert got.provider_metadata == asset["provider_metadata"]
        assert got.duration == 1.5 and (got.width, got.height) == (10, 20)
        assert got.created_at.replace(tzinfo=UTC) == now
        stored = s.execute(select(StoredObject)).scalar_one()
        assert (stored.key, stored.sha256, stored.size) == (obj["key"], None, None)

    # A second object with the same id is a conflict, raised as SQLAlchemy raises it.
    ex.begin()
    with pytest.raises(sa_exc.IntegrityError):
        writes.insert_pending(ex, obj, {**asset, "id": "a2"})
    ex.rollback()
    with Session(engine) as s:
        assert len(s.execute(select(Asset)).all()) == 1  # nothing half-written
