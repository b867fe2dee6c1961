"""The acceptance run: 500 assets local -> SeaweedFS, the migration killed (SIGKILL) halfway
and run again, ends with all 500 verified in SeaweedFS, switched, and nothing twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mediakeep import MediaKeep
from mediakeep.db.models import Asset, StoredObject
from mediakeep.maintenance.verify import planned, verify
from tests.conftest import Backend, make_settings
from tests.core.helpers import png_bytes
from tests.maintenance.conftest import remote_keys, s3_of
from tests.maintenance.test_migrate import target_env
from tests.support.seaweed import SeaweedS3

N = 500
CLI = [sys.executable, "-m", "mediakeep.cli"]


def ledger_lines(data_dir: Path) -> int:
    found = list((data_dir / "migrations").glob("*.jsonl"))
    return sum(len(p.read_bytes().splitlines()) for p in found)


async def test_a_killed_migration_resumes_to_completion(
    seaweed: SeaweedS3, tmp_path: Path, request: pytest.FixtureRequest, owner: str
) -> None:
    data = tmp_path / "data"
    source = make_settings(
        Backend("sqlite", "local"),
        data,
        request,
        variants_enabled=False,
        private_bucket="assets",
        public_bucket="public-assets",
    )
    async with MediaKeep(source) as keep:
        results = await keep.store_many(
            [png_bytes(i, size=24 + i // 256) for i in range(N)], owner=owner, concurrency=16
        )
    assert [r.status for r in results].count("stored") == N

    tag = uuid.uuid4().hex[:10]
    target_file = target_env(tmp_path / "target.env", seaweed, tag)
    env = {
        **os.environ,
        "MEDIAKEEP_DATA_DIR": str(data),
        "MEDIAKEEP_DATABASE_URL": str(source.database_url),
        "MEDIAKEEP_LOCAL_ROOT": str(source.local_root),
        "MEDIAKEEP_SIGNING_SECRET": "s",
    }
    args = [*CLI, "migrate", "--to", str(target_file), "--verify", "--concurrency", "2", "--json"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        while ledger_lines(data) < N // 4 and proc.poll() is None:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(60)
    done_before = ledger_lines(data)
    assert proc.returncode == -signal.SIGKILL
    assert N // 4 <= done_before < N, "the kill must land halfway"

    rerun = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    assert report["failed"] == []
    assert report["skipped"] >= done_before
    assert report["copied"] + report["skipped"] == N

    target_private = f"mk-mig-{tag}"
    remote = s3_of(seaweed)
    listed = await remote_keys(remote, target_private, "")
    await remote.close()
    assert listed == {str(r.key) for r in results}  # all 500, and nothing else

    moved = source.model_copy(
        update={
            "store": "s3",
            "s3_endpoint": seaweed.endpoint,
            "s3_region": seaweed.region,
            "s3_access_key_id": seaweed.access_key,
            "s3_secret_access_key": seaweed.secret_key,
            "private_bucket": target_private,
            "public_bucket": f"mk-migp-{tag}",
        }
    )
    async with MediaKeep(moved) as keep:
        async with keep.repo.sessions() as s:
            buckets = set((await s.execute(select(StoredObject.bucket).distinct())).scalars())
            objects = await s.scalar(select(func.count()).select_from(StoredObject))
            assets = await s.scalar(select(func.count()).select_from(Asset))
        assert (buckets, objects, assets) == ({target_private}, N, N)
        checked = await verify(keep, await planned(keep, owner=owner, sample=None), concurrency=8)
        assert (checked.checked, checked.ok, checked.problems) == (N, N, [])
