"""Migration between stores (local -> SeaweedFS here): every copy checked, records switched
only after, a rerun skips what is done, a bad source object is refused."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from mediakeep import MediaKeep, Settings
from mediakeep.db.models import StoredObject, Variant
from mediakeep.maintenance.migrate import Migration
from mediakeep.maintenance.targets import load_target
from mediakeep.maintenance.verify import planned, verify
from tests.conftest import Backend, make_settings
from tests.core.helpers import png_bytes
from tests.core.test_cli import run as run_cli
from tests.maintenance.conftest import remote_keys, s3_of
from tests.support.seaweed import SeaweedS3


def target_env(path: Path, sw: SeaweedS3, tag: str) -> Path:
    """An env file naming SeaweedFS and two fresh buckets: the documented way to name a
    migration target."""
    path.write_text(
        "\n".join(
            [
                "MEDIAKEEP_STORE=s3",
                f"MEDIAKEEP_S3_ENDPOINT={sw.endpoint}",
                f"MEDIAKEEP_S3_REGION={sw.region}",
                f"MEDIAKEEP_S3_ACCESS_KEY_ID={sw.access_key}",
                f"MEDIAKEEP_S3_SECRET_ACCESS_KEY={sw.secret_key}",
                f"MEDIAKEEP_PRIVATE_BUCKET=mk-mig-{tag}",
                f"MEDIAKEEP_PUBLIC_BUCKET=mk-migp-{tag}",
                "MEDIAKEEP_MAX_FILE_SIZE=1",  # not a store setting: must not leak in
            ]
        )
        + "\n"
    )
    return path


async def buckets_of(keep: MediaKeep) -> tuple[set[str], set[str]]:
    async with keep.repo.sessions() as s:
        objects = set((await s.execute(select(StoredObject.bucket).distinct())).scalars())
        variants = set((await s.execute(select(Variant.bucket).distinct())).scalars())
    return objects, variants


async def test_migrate_local_to_s3_checks_switches_and_resumes(
    seaweed: SeaweedS3, tmp_path: Path, request: pytest.FixtureRequest, owner: str
) -> None:
    source = make_settings(Backend("sqlite", "local"), tmp_path, request)
    tag = uuid.uuid4().hex[:10]
    target = load_target(str(target_env(tmp_path / "target.env", seaweed, tag)), source)
    assert target.store == "s3" and target.private_bucket == f"mk-mig-{tag}"
    assert target.max_file_size == source.max_file_size
    async with MediaKeep(source) as keep:
        blobs = [png_bytes(300 + i, size=300) for i in range(8)]
        private = await keep.store_many(blobs[:6], owner=owner, collection="c")
        public = await keep.store_many(blobs[6:], owner=owner, collection="c", public=True)
        stored = private + public
        assert all(r.status == "stored" for r in stored)

        dry = await Migration(keep, source, target, dry_run=True).run()
        assert (dry.would_copy, dry.copied, dry.switched, dry.failed) == (8, 0, 0, [])
        assert dry.would_copy_bytes > sum(len(b) for b in blobs)  # variants count too
        assert await buckets_of(keep) == (
            {source.private_bucket, source.public_bucket},
            {source.private_bucket, source.public_bucket},
        )

        report = await Migration(keep, source, target, verify=True, concurrency=3).run()
        assert (report.copied, report.verified, report.switched) == (8, 8, 8)
        assert (report.skipped, report.failed) == (0, [])
        assert await buckets_of(keep) == (
            {target.private_bucket, target.public_bucket},
            {target.private_bucket, target.public_bucket},
        )
        again = await Migration(keep, source, target, verify=True).run()
        assert (again.copied, again.skipped, again.failed) == (0, 8, [])

    # Exactly the originals and their variants are in the target, nothing twice.
    async with MediaKeep(source.model_copy(update={"store": "s3", **_s3(target)})) as moved:
        async with moved.repo.sessions() as s:
            variant_keys = {
                (b, k) for b, k in (await s.execute(select(Variant.bucket, Variant.key))).all()
            }
        remote = s3_of(seaweed)
        listed = {
            (b, k)
            for b in (target.private_bucket, target.public_bucket)
            for k in await remote_keys(remote, b, "")
        }
        await remote.close()
        originals = {(target.private_bucket, str(r.key)) for r in private} | {
            (target.public_bucket, str(r.key)) for r in public
        }
        assert variant_keys and listed == originals | variant_keys
        for r, blob in zip(stored, blobs, strict=True):
            asset = await moved.get(str(r.id), owner=owner)
            chunks = [c async for c in moved.get_asset_stream(asset)]
            assert b"".join(chunks) == blob
        checked = await verify(moved, await planned(moved, owner=owner, sample=None))
        assert checked.problems == [] and checked.checked == len(listed)


def _s3(target: Settings) -> dict[str, object]:
    return {
        k: getattr(target, k)
        for k in (
            "s3_endpoint",
            "s3_region",
            "s3_access_key_id",
            "s3_secret_access_key",
            "private_bucket",
            "public_bucket",
        )
    }


async def test_a_source_object_that_does_not_match_its_record_is_not_switched(
    seaweed: SeaweedS3, tmp_path: Path, request: pytest.FixtureRequest, owner: str
) -> None:
    source = make_settings(Backend("sqlite", "local"), tmp_path, request, variants_enabled=False)
    target = load_target(
        str(target_env(tmp_path / "t.env", seaweed, uuid.uuid4().hex[:10])), source
    )
    async with MediaKeep(source) as keep:
        good = await keep.put_bytes(png_bytes(1), owner=owner)
        bad = await keep.put_bytes(png_bytes(2), owner=owner)
        path = keep.store.path_for(source.private_bucket, str(bad.key))  # type: ignore[attr-defined]
        data = bytearray(path.read_bytes())
        data[-20] ^= 0xFF  # same size, other bytes: bit rot
        path.write_bytes(bytes(data))

        report = await Migration(keep, source, target).run()
        assert report.copied == 1 and [f.key for f in report.failed] == [bad.key]
        assert "do not match" in report.failed[0].reason
        remote = s3_of(seaweed)
        assert await remote_keys(remote, target.private_bucket, "") == {good.key}
        await remote.close()
        assert (await keep.get(str(bad.id))).bucket == source.private_bucket
        assert (await keep.get(str(good.id))).bucket == target.private_bucket


def test_migrate_command_reports_json(
    seaweed: SeaweedS3, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    env = {"MEDIAKEEP_DATA_DIR": str(tmp_path / "data"), "MEDIAKEEP_VARIANTS_ENABLED": "false"}
    local = tmp_path / "in.png"
    local.write_bytes(png_bytes(9))
    assert run_cli(["ingest", str(local), "--owner", "alice", "--json"], env).returncode == 0
    target = target_env(tmp_path / "t.env", seaweed, uuid.uuid4().hex[:10])
    dry = run_cli(["migrate", "--to", str(target), "--dry-run", "--json"], env)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["would_copy"] == 1
    done = run_cli(["migrate", "--to", str(target), "--verify", "--json"], env)
    report = json.loads(done.stdout)
    assert (report["copied"], report["verified"], report["failed"]) == (1, 1, [])
    bad = run_cli(["migrate", "--to", str(tmp_path / "nope.env"), "--json"], env)
    assert bad.returncode == 1 and json.loads(bad.stdout)["error"]["code"] == "invalid_input"
