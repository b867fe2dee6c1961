"""verify, stats, doctor and status: what they report matches what is really there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mediakeep import MediaKeep
from mediakeep.maintenance.doctor import run_doctor
from mediakeep.maintenance.stats import collect_stats
from mediakeep.maintenance.verify import planned, verify
from tests.conftest import Backend, KeepFactory, make_settings
from tests.core.helpers import png_bytes
from tests.core.test_cli import run as run_cli
from tests.maintenance.conftest import hybrid_settings
from tests.support.netutil import free_port
from tests.support.seaweed import SeaweedS3


async def test_verify_finds_rot_and_loss_in_every_store(keeps: KeepFactory, owner: str) -> None:
    keep = await keeps.open(variants_enabled=False)
    fine, rotten, lost = [await keep.put_bytes(png_bytes(500 + i), owner=owner) for i in range(3)]
    bucket = keep.settings.private_bucket
    other = bytearray(png_bytes(501))
    other[-20] ^= 0xFF  # same size, other bytes
    await keep.store.delete(bucket, str(rotten.key))
    await keep.store.put(
        bucket, str(rotten.key), bytes(other), content_type="image/png", cache_control="x"
    )
    await keep.store.delete(bucket, str(lost.key))

    report = await verify(keep, await planned(keep, owner=owner, sample=None))
    assert (report.checked, report.ok) == (3, 1)
    found = {p.key: p for p in report.problems}
    assert set(found) == {rotten.key, lost.key}
    assert found[str(rotten.key)].problem == "sha256_mismatch"
    assert found[str(rotten.key)].expected_sha256 == rotten.sha256
    assert found[str(lost.key)].problem == "missing"
    assert fine.key not in found
    sampled = await verify(keep, await planned(keep, owner=owner, sample=2))
    assert sampled.checked == 2


async def test_stats_totals_and_dedup_savings(keeps: KeepFactory, owner: str) -> None:
    keep = await keeps.open()
    a = await keep.put_bytes(png_bytes(600), owner=owner, collection="one")
    b = await keep.put_bytes(png_bytes(600), owner=owner, collection="two")  # the same bytes
    c = await keep.put_bytes(png_bytes(601), owner=owner, collection="two", public=True)
    assert b.status == "deduplicated"
    size_a, size_c = int(a.size or 0), int(c.size or 0)

    stats = await collect_stats(keep, owner=owner)
    assert (stats.assets, stats.bytes) == (3, 2 * size_a + size_c)
    assert (stats.objects, stats.stored_bytes) == (2, size_a + size_c)
    assert stats.dedup_savings_bytes == size_a
    assert stats.by_kind["image"].assets == 3
    assert {k: v.assets for k, v in stats.by_collection.items()} == {"one": 1, "two": 2}
    s = keep.settings
    assert stats.by_bucket[s.private_bucket].bytes == size_a
    assert stats.by_bucket[s.public_bucket].bytes == size_c
    assert stats.by_bucket[s.private_bucket].variants > 0 and stats.variant_bytes > 0
    everyone = await collect_stats(keep)
    assert everyone.by_owner[owner].dedup_savings_bytes == size_a
    assert everyone.assets >= 3


def test_stats_and_status_commands(tmp_path: Path) -> None:
    env = {
        "MEDIAKEEP_DATA_DIR": str(tmp_path / "data"),
        "MEDIAKEEP_STORE": "hybrid",  # local-only: no remote configured
        "MEDIAKEEP_SIGNING_SECRET": "s",
        "MEDIAKEEP_VARIANTS_ENABLED": "false",
    }
    local = tmp_path / "in.png"
    local.write_bytes(png_bytes(7))
    assert run_cli(["ingest", str(local), "--owner", "carol", "--json"], env).returncode == 0
    stats = json.loads(run_cli(["stats", "--owner", "carol", "--json"], env).stdout)
    assert (stats["assets"], stats["by_owner"]["carol"]["assets"]) == (1, 1)
    assert "carol" in run_cli(["stats"], env).stdout
    status = json.loads(run_cli(["status", "--json"], env).stdout)
    assert status["store"] == "hybrid" and status["revision"]
    assert status["replication"]["remote"] == "none"
    assert status["replication"]["backlog"] == 1
    assert status["replication"]["pending_bytes"] == local.stat().st_size
    assert "1 waiting" in run_cli(["status"], env).stdout


async def test_doctor_passes_a_good_s3_and_hybrid_setup(
    seaweed: SeaweedS3, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    settings = make_settings(Backend("sqlite", "s3"), tmp_path, request, jwt_secret="j")
    async with MediaKeep(settings):
        pass  # migrated, buckets created
    checks = {c.name: c for c in await run_doctor(settings)}
    assert {n: c.status for n, c in checks.items()} == {
        "database": "ok",
        "database schema": "ok",
        "buckets": "ok",
        "store probe": "ok",  # including a signed URL fetched from SeaweedFS
        "clock": "ok",
        "signing secret": "ok",
        "JWT secret": "ok",
    }

    hybrid = hybrid_settings(tmp_path / "h", request, seaweed, jwt_secret="j")
    async with MediaKeep(hybrid):
        pass
    checks = {c.name: c for c in await run_doctor(hybrid)}
    for name in ("hybrid remote buckets", "hybrid remote probe", "hybrid remote clock"):
        assert checks[name].status == "ok", checks[name]
    # This service is not running: the local signed URL cannot be fetched, and it says so.
    assert checks["store probe"].status == "warn"
    assert "mediakeep serve" in checks["store probe"].message


async def test_doctor_says_what_to_fix(
    seaweed: SeaweedS3, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    no_bucket = make_settings(
        Backend("sqlite", "s3"), tmp_path, request, private_bucket="mk-doctor-absent"
    )
    checks = {c.name: c for c in await run_doctor(no_bucket)}
    assert checks["buckets"].status == "fail"
    assert "mk-doctor-absent" in checks["buckets"].message
    assert "create it" in checks["buckets"].message
    assert checks["database schema"].status == "warn"  # never started: not migrated yet
    assert "mediakeep db upgrade" in checks["database schema"].message

    bad_key = make_settings(
        Backend("sqlite", "s3"), tmp_path, request, s3_secret_access_key="wrong"
    )
    checks = {c.name: c for c in await run_doctor(bad_key)}
    assert checks["store probe"].status == "fail"

    no_db = make_settings(
        Backend("sqlite", "local"),
        tmp_path,
        request,
        database_url=f"postgresql+asyncpg://u:secret@127.0.0.1:{free_port()}/x",
    )
    checks = {c.name: c for c in await run_doctor(no_db)}
    assert checks["database"].status == "fail"
    assert "cannot reach the database" in checks["database"].message
    assert "secret" not in checks["database"].message  # the password is never shown
    assert "database schema" not in checks

    supabase_half = make_settings(
        Backend("sqlite", "local"), tmp_path, request, store="supabase", supabase_url=None
    )
    checks = {c.name: c for c in await run_doctor(supabase_half)}
    assert checks["store configuration"].status == "fail"
    assert "MEDIAKEEP_SUPABASE_URL" in checks["store configuration"].message


def test_doctor_command(tmp_path: Path) -> None:
    env = {"MEDIAKEEP_DATA_DIR": str(tmp_path / "data")}
    proc = run_cli(["doctor", "--json"], env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is True
    names = [c["name"] for c in report["checks"]]
    assert names[:4] == ["database", "database schema", "buckets", "store probe"]
    broken = run_cli(["doctor"], {**env, "MEDIAKEEP_STORE": "s3", "MEDIAKEEP_S3_ENDPOINT": "x"})
    assert broken.returncode == 1 and "FAIL" in broken.stdout
    invalid = run_cli(["doctor", "--json"], {**env, "MEDIAKEEP_STORE": "floppy"})
    assert invalid.returncode == 1
    assert json.loads(invalid.stdout)["error"]["code"] == "invalid_input"
