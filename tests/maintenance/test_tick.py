"""The worker's scheduled maintenance: gc and cache clean-up when due, off when told, and
never two sweeps at once across processes."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mediakeep import MediaKeep
from mediakeep.db.engine import create_engine
from mediakeep.maintenance.lock import maintenance_lock
from mediakeep.stores.hybrid import HybridStore
from tests.conftest import Backend, make_settings
from tests.core.helpers import png_bytes
from tests.maintenance.conftest import hybrid_settings
from tests.support.postgres import PostgresServer
from tests.support.seaweed import SeaweedS3

OLD = (datetime.now(UTC) - timedelta(days=3)).timestamp()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None  # make_settings' SQLite file in tmp_path
        return
    pg: PostgresServer = request.getfixturevalue("postgres")
    with pg.database() as url:
        yield url


@pytest.fixture
async def keep(
    database_url: str | None, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[MediaKeep]:
    settings = make_settings(Backend("sqlite", "local"), tmp_path, request, gc_grace=3600)
    if database_url is not None:
        settings = settings.model_copy(update={"database_url": database_url})
    async with MediaKeep(settings) as k:
        yield k


async def plant_orphan(keep: MediaKeep, name: str) -> Path:
    key = f"stray/{name}.png"
    await keep.store.put(
        keep.settings.private_bucket, key, b"x", content_type="image/png", cache_control="x"
    )
    path: Path = keep.store.path_for(keep.settings.private_bucket, key)  # type: ignore[attr-defined]
    os.utime(path, (OLD, OLD))
    return path


async def test_gc_runs_when_due_and_not_again_until_the_interval(keep: MediaKeep) -> None:
    first = await plant_orphan(keep, "a")
    report = await keep.maintenance_tick()
    assert report.ran and report.gc is not None and report.gc.orphans == 1
    assert not first.exists()

    second = await plant_orphan(keep, "b")
    idle = await keep.maintenance_tick()
    assert (idle.ran, idle.reason) == (False, "nothing due")
    assert second.exists()
    forced = await keep.maintenance_tick(force=True)
    assert forced.gc is not None and forced.gc.orphans == 1 and not second.exists()


async def test_auto_cleanup_off_leaves_everything(keep: MediaKeep) -> None:
    keep.settings = keep.settings.model_copy(update={"auto_cleanup": False})
    orphan = await plant_orphan(keep, "c")
    report = await keep.maintenance_tick()
    assert (report.ran, report.reason) == (False, "MEDIAKEEP_AUTO_CLEANUP is off")
    assert orphan.exists()


async def test_one_sweep_at_a_time_across_processes(keep: MediaKeep) -> None:
    orphan = await plant_orphan(keep, "d")
    # Another worker: its own engine and connections (PostgreSQL), its own lock file
    # descriptor (SQLite), exactly as a second process would have.
    other = create_engine(keep.settings.resolved_database_url)
    try:
        async with maintenance_lock(other, keep.settings.data_dir) as held:
            assert held
            busy = await keep.maintenance_tick()
            assert (busy.ran, busy.reason) == (False, "another process is running maintenance")
            assert orphan.exists()
        async with maintenance_lock(other, keep.settings.data_dir) as held_again:
            assert held_again  # released when the holder finished
    finally:
        await other.dispose()
    # The busy tick counted as this interval's run; forcing runs it now the lock is free.
    assert (await keep.maintenance_tick()).reason == "nothing due"
    assert (await keep.maintenance_tick(force=True)).ran and not orphan.exists()


async def test_the_tick_cleans_the_hybrid_cache(
    seaweed: SeaweedS3, tmp_path: Path, request: pytest.FixtureRequest, owner: str
) -> None:
    settings = hybrid_settings(
        tmp_path, request, seaweed, hybrid_cache_max_bytes=1, variants_enabled=False
    )
    async with MediaKeep(settings) as keep:
        assert isinstance(keep.store, HybridStore)
        stored = await keep.put_bytes(png_bytes(3), owner=owner)
        path = keep.store.path_for(settings.private_bucket, str(stored.key))
        assert (await keep.store.flush(within=60)).backlog == 0
        report = await keep.maintenance_tick()
        assert report.cache is not None and report.cache.evicted == 1
        assert not path.exists()
        assert report.gc is not None and report.gc.errors == []
