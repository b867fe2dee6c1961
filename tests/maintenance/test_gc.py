"""gc: exactly the garbage goes (orphans, stale pending writes, unfinished deletes, expired
uploads, versions past retention), nothing younger than the grace period, and records
whose bytes vanished are marked."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from mediakeep import MediaKeep
from mediakeep.db.models import Asset, Generation, GenerationMedia, StoredObject, Upload
from mediakeep.maintenance.gc import collect_garbage
from tests.conftest import Backend, KeepFactory, make_settings
from tests.core.helpers import png_bytes
from tests.core.test_cli import run as run_cli
from tests.support.postgres import PostgresServer
from tests.support.supabase_storage import SupabaseTarget

OLD = datetime.now(UTC) - timedelta(days=3)
GRACE = timedelta(hours=24)


@pytest.fixture(params=["sqlite", "postgres"])
async def fresh_keep(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MediaKeep]:
    """A local store and a database of this test's own: gc sees only what it seeds."""
    overrides: dict[str, object] = {"variants_enabled": False, "slot_keep_versions": 1}
    if request.param == "postgres":
        pg: PostgresServer = request.getfixturevalue("postgres")
        with pg.database() as url:
            async with MediaKeep(
                make_settings(
                    Backend("sqlite", "local"), tmp_path, request, **overrides
                ).model_copy(update={"database_url": url})
            ) as keep:
                yield keep
    else:
        async with MediaKeep(
            make_settings(Backend("sqlite", "local"), tmp_path, request, **overrides)
        ) as keep:
            yield keep


def age_file(keep: MediaKeep, bucket: str, key: str) -> None:
    path = keep.store.path_for(bucket, key)  # type: ignore[attr-defined]
    os.utime(path, (OLD.timestamp(), OLD.timestamp()))


def exists(keep: MediaKeep, bucket: str, key: str) -> bool:
    return bool(keep.store.path_for(bucket, key).exists())  # type: ignore[attr-defined]


async def age_rows(
    keep: MediaKeep, *, object_id: str | None = None, asset_id: str | None = None
) -> None:
    async with keep.repo.sessions.begin() as s:
        if object_id is not None:
            await s.execute(
                update(StoredObject)
                .where(StoredObject.id == object_id)
                .values(created_at=OLD, updated_at=OLD)
            )
        if asset_id is not None:
            await s.execute(
                update(Asset).where(Asset.id == asset_id).values(created_at=OLD, updated_at=OLD)
            )


async def put_raw(keep: MediaKeep, key: str, data: bytes) -> None:
    await keep.store.put(
        keep.settings.private_bucket, key, data, content_type="image/png", cache_control="x"
    )


async def pending_write(keep: MediaKeep, owner: str, key: str, data: bytes) -> str:
    pending = await keep.repo.begin_write(
        owner=owner,
        collection="c",
        slot=None,
        public=False,
        bucket=keep.settings.private_bucket,
        key=key,
        content_type="image/png",
        media_kind="image",
        source_url=None,
        provider=None,
        metadata={},
        asset_id=str(uuid.uuid4()),
    )
    await put_raw(keep, key, data)
    return pending.object_id


async def failed_generation(
    keep: MediaKeep, owner: str, asset_id: str, *, failed_at: datetime
) -> str:
    async with keep.repo.sessions.begin() as s:
        gen = Generation(
            owner=owner,
            collection="gen",
            provider="fal",
            status="failed",
            created_at=failed_at,
            updated_at=failed_at,
        )
        s.add(gen)
        await s.flush()
        s.add(
            GenerationMedia(
                generation_id=gen.id,
                position=0,
                path="/images/0/url",
                provider_url="https://fal.media/files/x.png",
                asset_id=asset_id,
                status="stored",
            )
        )
        return gen.id


async def object_status(keep: MediaKeep, object_id: str) -> tuple[str, str | None] | None:
    async with keep.repo.sessions() as s:
        row = (
            await s.execute(
                select(StoredObject.status, StoredObject.sha256).where(StoredObject.id == object_id)
            )
        ).first()
    return None if row is None else (row[0], row[1])


async def test_gc_removes_exactly_the_old_garbage(fresh_keep: MediaKeep, owner: str) -> None:
    keep = fresh_keep
    bucket = keep.settings.private_bucket

    kept = await keep.put_bytes(png_bytes(1), owner=owner, collection="c")
    assert kept.asset is not None
    await age_rows(keep, object_id=kept.asset.object_id, asset_id=str(kept.id))
    age_file(keep, bucket, str(kept.key))
    young = await keep.put_bytes(png_bytes(2), owner=owner, collection="c")

    old_orphan, young_orphan = f"{owner}/c/orphan-old.png", f"{owner}/c/orphan-young.png"
    await put_raw(keep, old_orphan, b"o" * 111)
    age_file(keep, bucket, old_orphan)
    await put_raw(keep, young_orphan, b"y" * 50)

    stale_key, fresh_key = f"{owner}/c/pending-old.png", f"{owner}/c/pending-young.png"
    stale = await pending_write(keep, owner, stale_key, b"p" * 222)
    await age_rows(keep, object_id=stale)
    age_file(keep, bucket, stale_key)
    fresh = await pending_write(keep, owner, fresh_key, b"q" * 10)

    released = await keep.put_bytes(png_bytes(3), owner=owner, collection="c")
    gone = await keep.repo.delete_asset(str(released.id), owner)  # bytes left: a failed delete
    assert gone is not None and gone.status == "deleting"
    await age_rows(keep, object_id=gone.id)

    vanished = await keep.put_bytes(png_bytes(4), owner=owner, collection="c")
    assert vanished.asset is not None
    await age_rows(keep, object_id=vanished.asset.object_id, asset_id=str(vanished.id))
    await keep.store.delete(bucket, str(vanished.key))

    upload = await keep.presign_upload(owner=owner, content_type="image/png", size=333)
    up = await keep.repo.get_upload(upload.asset_id, owner)
    await put_raw(keep, up.staging_key, b"u" * 333)
    age_file(keep, bucket, up.staging_key)
    async with keep.repo.sessions.begin() as s:
        await s.execute(update(Upload).where(Upload.id == up.id).values(expires_at=OLD))

    versions = [
        await keep.put_bytes(png_bytes(10 + i), owner=owner, collection="c", slot="s")
        for i in range(3)
    ]
    await age_rows(keep, asset_id=str(versions[0].id))  # v1 is old; v2 is past retention too,
    # but young

    doomed = await keep.put_bytes(png_bytes(20), owner=owner, collection="gen")
    spared = await keep.put_bytes(png_bytes(21), owner=owner, collection="gen")
    old_failure = await failed_generation(keep, owner, str(doomed.id), failed_at=OLD)
    await failed_generation(keep, owner, str(spared.id), failed_at=datetime.now(UTC))

    expected = {
        "orphans": 1,
        "orphan_bytes": 111,
        "pending": 1,
        "pending_bytes": 222,
        "deleting": 1,
        "deleting_bytes": released.size,
        "unreferenced": 0,
        "expired_uploads": 1,
        "expired_upload_bytes": 333,
        "old_versions": 1,
        "old_version_bytes": versions[0].size,
        "failed_generation_files": 1,
        "failed_generation_bytes": doomed.size,
        "missing_marked": 1,
        "young_kept": 1,
        "errors": [],
    }
    planned = (await collect_garbage(keep, grace=GRACE, dry_run=True)).to_dict()
    assert {k: planned[k] for k in expected} == expected
    # A dry run changes nothing.
    for key in (old_orphan, stale_key, str(released.key), up.staging_key):
        assert exists(keep, bucket, key)
    assert await object_status(keep, vanished.asset.object_id) == ("stored", vanished.sha256)
    assert len(await keep.versions(owner=owner, collection="c", slot="s")) == 3

    done = (await collect_garbage(keep, grace=GRACE)).to_dict()
    assert {k: done[k] for k in expected} == expected
    assert done["removed_bytes"] == sum(
        int(size or 0) for size in (111, 222, released.size, 333, versions[0].size, doomed.size)
    )
    for key in (old_orphan, stale_key, str(released.key), up.staging_key, str(versions[0].key)):
        assert not exists(keep, bucket, key), key
    for key in (str(kept.key), str(young.key), young_orphan, fresh_key):
        assert exists(keep, bucket, key), key
    for v in versions[1:]:
        assert exists(keep, bucket, str(v.key))
    assert await object_status(keep, stale) is None
    assert await object_status(keep, fresh) == ("pending", None)
    assert await object_status(keep, gone.id) is None
    assert await object_status(keep, vanished.asset.object_id) == ("missing", None)
    assert [a.version for a in await keep.versions(owner=owner, collection="c", slot="s")] == [
        3,
        2,
    ]
    assert (await keep.get(str(kept.id))).id == kept.id
    assert (await keep.get_generation(old_failure)).media[0].status == "removed"
    assert not exists(keep, bucket, str(doomed.key)) and exists(keep, bucket, str(spared.key))

    again = await collect_garbage(keep, grace=GRACE)
    assert (again.removed, again.missing_marked, again.errors) == (0, 0, [])

    # The same bytes can be stored again while the record is marked missing...
    again_stored = await keep.put_bytes(png_bytes(4), owner=owner, collection="other")
    assert again_stored.status == "stored"
    await keep.delete(str(again_stored.id), owner=owner)
    # ...and when the object comes back, the mark goes.
    await put_raw(keep, str(vanished.key), png_bytes(4))
    back = await collect_garbage(keep, grace=GRACE)
    assert back.missing_restored == 1
    assert await object_status(keep, vanished.asset.object_id) == ("stored", vanished.sha256)


async def test_gc_reads_object_ages_from_every_store(
    keeps: KeepFactory, owner: str, request: pytest.FixtureRequest
) -> None:
    tag = uuid.uuid4().hex[:12]
    private, public = f"mk-gc-{tag}", f"mk-gcp-{tag}"
    if keeps.backend.store == "supabase":
        sb: SupabaseTarget = request.getfixturevalue("supabase")
        sb.uses(private)
        sb.uses(public)
    keep = await keeps.open(private_bucket=private, public_bucket=public, variants_enabled=False)
    kept = await keep.put_bytes(png_bytes(1), owner=owner)
    await put_raw(keep, f"{owner}/c/orphan.png", b"orphan")

    now = await collect_garbage(keep, grace=timedelta(hours=1), dry_run=True)
    assert (now.orphans, now.young_kept) == (0, 1)
    later = await collect_garbage(
        keep, grace=timedelta(hours=1), now=datetime.now(UTC) + timedelta(hours=2)
    )
    assert (later.orphans, later.orphan_bytes, later.missing_marked) == (1, 6, 0)
    assert await keep.store.head(private, f"{owner}/c/orphan.png") is None
    assert await keep.store.head(private, str(kept.key)) is not None


def test_gc_command(tmp_path: Path) -> None:
    env = {"MEDIAKEEP_DATA_DIR": str(tmp_path / "data")}
    local = tmp_path / "in.png"
    local.write_bytes(png_bytes(5))
    assert run_cli(["ingest", str(local), "--owner", "alice", "--json"], env).returncode == 0
    orphan = tmp_path / "data" / "objects" / "assets" / "alice" / "stray.png"
    orphan.write_bytes(b"stray")
    os.utime(orphan, (OLD.timestamp(), OLD.timestamp()))

    dry = run_cli(["gc", "--dry-run", "--grace", "1h", "--json"], env)
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert (report["dry_run"], report["orphans"], report["orphan_bytes"]) == (True, 1, 5)
    assert report["grace_seconds"] == 3600 and orphan.exists()

    real = run_cli(["gc", "--grace", "2d", "--json"], env)
    assert json.loads(real.stdout)["orphans"] == 1 and not orphan.exists()
    human = run_cli(["gc", "--dry-run"], env)
    assert human.returncode == 0 and "orphan objects" in human.stdout
    bad = run_cli(["gc", "--grace", "soon"], env)
    assert bad.returncode != 0 and "not a duration" in bad.stderr
