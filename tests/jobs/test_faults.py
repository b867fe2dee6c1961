"""The acceptance faults: a worker killed mid-download, two workers draining one queue, and
the object store going away while jobs wait. Real processes, real servers."""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from sqlalchemy import func, select

from mediakeep import MediaKeep, Settings
from mediakeep.db.models import Asset, Job, JobEvent
from mediakeep.jobs import JobInfo, background_worker
from tests.conftest import PRIVATE_BUCKET, PUBLIC_BUCKET, Backend, make_settings
from tests.core.helpers import keys_in_store, rows_for
from tests.jobs.support import MediaServer
from tests.support.postgres import PostgresServer
from tests.support.provider import Provider, payload_sha256
from tests.support.seaweed import SeaweedS3

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "mediakeep.cli"]


@pytest.fixture
def pg_db(postgres: PostgresServer) -> Iterator[str]:
    url = postgres.create_database()
    try:
        yield url
    finally:
        postgres.drop_database(url)


def env_for(settings: Settings, **extra: Any) -> dict[str, str]:
    """The environment a ``mediakeep worker`` process needs to share ``settings``."""
    values: dict[str, Any] = {
        "data_dir": settings.data_dir,
        "database_url": settings.database_url,
        "store": settings.store,
        "private_bucket": settings.private_bucket,
        "public_bucket": settings.public_bucket,
        "allow_private_networks": "true",
        "signing_secret": settings.signing_secret,
        "variants_enabled": "false",
        "job_poll_interval": 0.05,
        "job_shutdown_grace": 2,
        "log_level": "warning",
        **extra,
    }
    if settings.store == "s3":
        values.update(
            s3_endpoint=settings.s3_endpoint,
            s3_region=settings.s3_region,
            s3_access_key_id=settings.s3_access_key_id,
            s3_secret_access_key=settings.s3_secret_access_key,
        )
    else:
        values["local_root"] = settings.resolved_local_root
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIAKEEP_")}
    env.update({f"MEDIAKEEP_{k.upper()}": str(v) for k, v in values.items() if v is not None})
    return env


class WorkerProcess:
    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen(
            [*CLI, "worker", "--json", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.name = ""

    def ready(self) -> WorkerProcess:
        line = self._line(60)
        assert line["event"] == "ready", line
        self.name = line["worker"]
        return self

    def _line(self, wait: float) -> dict[str, Any]:
        out: IO[str] | None = self.proc.stdout
        assert out is not None
        sel = selectors.DefaultSelector()
        sel.register(out, selectors.EVENT_READ)
        try:
            if not sel.select(wait):
                raise AssertionError("the worker printed nothing in time")
        finally:
            sel.close()
        line = out.readline()
        assert line, "the worker exited"
        parsed: dict[str, Any] = json.loads(line)
        return parsed

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> dict[str, Any]:
        """SIGTERM, then the worker's closing report."""
        self.proc.send_signal(signal.SIGTERM)
        return self.report()

    def report(self) -> dict[str, Any]:
        report = self._line(60)
        self.proc.wait(30)
        assert report["event"] == "stopped"
        return report

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


async def wait_until(check: Any, wait: float, what: str) -> None:
    deadline = time.monotonic() + wait
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def store_matches_records(keep: MediaKeep, owner: str) -> list[str]:
    """Every object under the owner's prefix is known to the database, and every stored
    asset's object is in the store. Returns the listed keys."""
    listed = await keys_in_store(keep, owner, variants=True)
    for bucket in (keep.settings.private_bucket, keep.settings.public_bucket):
        keys = [k.split("/", 1)[1] for k in listed if k.startswith(bucket + "/")]
        assert await keep.repo.known_keys(bucket, keys) == set(keys)
    page = await keep.list(owner=owner, limit=1000)
    assert {f"{a.bucket}/{a.key}" for a in page.items} <= set(listed)
    return listed


async def test_a_worker_killed_mid_download_is_replaced_and_stores_exactly_once(
    request: pytest.FixtureRequest,
    pg_db: str,
    media: MediaServer,
    tmp_path: Path,
    owner: str,
) -> None:
    settings = make_settings(
        Backend("postgres", "s3"), tmp_path, request, database_url=pg_db, variants_enabled=False
    )
    keep = MediaKeep(settings)
    await keep.start()
    workers: list[WorkerProcess] = []
    try:
        # A short lease, and a dead write is cleaned 3 s after it began (a live write could
        # not be that old only because these transfers are known to be short).
        env = env_for(settings, job_visibility_timeout=2, job_stale_write_after=3)
        n = 24_000_000
        url = media.url(f"/big/{n}.mp4?chunk=65536&delay=0.005&o={owner}")
        key = MediaServer.key(url)
        first = WorkerProcess(env).ready()
        workers.append(first)
        job = await keep.submit_ingest([url], owner=owner)

        async def halfway() -> bool:
            # Past 8 MiB the store upload is a multipart upload in progress.
            return media.sent.get(key, 0) > 12_000_000

        await wait_until(halfway, 60, "the download to be half done")
        first.kill()
        assert media.sent[key] < n  # killed mid-download
        running = await keep.get_job(job.id)
        assert running.status == "running" and running.items[0].status == "pending"

        second = WorkerProcess(env).ready()
        workers.append(second)
        done = await keep.wait_for_job(job.id, wait=90)
        report = second.stop()
        assert done.status == "completed", done.last_error
        assert report["completed"] == 1 and report["lost"] == 0
        started = [e.data for e in await keep.job_events(job.id) if e.type == "started"]
        assert started[0]["worker"] == first.name and not started[0]["reclaimed"]
        assert {s["worker"] for s in started[1:]} == {second.name}
        assert any(s["reclaimed"] for s in started[1:])
        # Downloaded twice (the first copy died with its worker), stored once.
        assert media.hits[key] == 2
        asset = await keep.get(done.items[0].asset_id or "", owner=owner)
        assert asset.size == n and asset.sha256 == payload_sha256(n, "mp4")
        assert await rows_for(keep, owner) == (1, 1)
        listed = await store_matches_records(keep, owner)
        assert listed == [f"{settings.private_bucket}/{asset.key}"]
    finally:
        for w in workers:
            w.close()
        await keep.close()


async def test_two_workers_drain_200_jobs_on_postgresql_without_doing_any_twice(
    request: pytest.FixtureRequest,
    pg_db: str,
    provider: Provider,
    tmp_path: Path,
    owner: str,
) -> None:
    settings = make_settings(
        Backend("postgres", "local"), tmp_path, request, database_url=pg_db, variants_enabled=False
    )
    keep = MediaKeep(settings)
    await keep.start()
    workers: list[WorkerProcess] = []
    try:
        env = env_for(settings, job_concurrency=4, media_processing="false")
        workers = [WorkerProcess(env), WorkerProcess(env)]
        for w in workers:
            w.ready()
        urls = [provider.url(f"/img/{owner}-{i}.png?w=24&h=24") for i in range(200)]
        gate = asyncio.Semaphore(8)

        async def submit(url: str) -> JobInfo:
            async with gate:
                return await keep.submit_ingest([url], owner=owner)

        jobs = await asyncio.gather(*(submit(u) for u in urls))

        async def drained() -> bool:
            async with keep.repo.sessions() as s:
                left = await s.scalar(
                    select(func.count()).where(Job.status.in_(("queued", "running")))
                )
            return left == 0

        await wait_until(drained, 120, "the queue to drain")
        for w in workers:
            w.proc.send_signal(signal.SIGTERM)
        reports = [w.report() for w in workers]
        # Both took part, and between them ran each job exactly once.
        assert all(r["jobs"] > 0 for r in reports), reports
        assert sum(r["jobs"] for r in reports) == 200
        assert sum(r["completed"] for r in reports) == 200
        async with keep.repo.sessions() as s:
            statuses = dict(
                (await s.execute(select(Job.status, func.count()).group_by(Job.status))).all()
            )
            attempts = set((await s.execute(select(Job.attempts))).scalars())
            starts = (
                await s.execute(
                    select(JobEvent.job_id, func.count())
                    .where(JobEvent.type == "started")
                    .group_by(JobEvent.job_id)
                )
            ).all()
            stored = await s.scalar(
                select(func.count()).where(Asset.owner == owner, Asset.status == "stored")
            )
        assert statuses == {"completed": 200} and attempts == {1}
        assert len(starts) == 200 and {n for _, n in starts} == {1}
        assert stored == 200
        assert all(provider.hits(u) == 1 for u in urls)
        assert {j.id for j in jobs} == {job_id for job_id, _ in starts}
    finally:
        for w in workers:
            w.close()
        await keep.close()


async def test_jobs_wait_out_an_object_store_outage(
    tmp_path: Path, provider: Provider, owner: str
) -> None:
    s3 = SeaweedS3().start()
    keep = MediaKeep(
        Settings(
            data_dir=tmp_path,
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'outage.db'}",
            store="s3",
            s3_endpoint=s3.endpoint,
            s3_region=s3.region,
            s3_access_key_id=s3.access_key,
            s3_secret_access_key=s3.secret_key,
            private_bucket=PRIVATE_BUCKET,
            public_bucket=PUBLIC_BUCKET,
            allow_private_networks=True,
            signing_secret="outage",
            variants_enabled=False,
            download_timeout=3,
            connect_timeout=1,
            job_poll_interval=0.05,
            job_retry_backoff=0.2,
            job_retry_max_backoff=1.0,
            job_stale_write_after=2,
            job_max_attempts=20,
        )
    )
    await keep.start()
    try:
        async with background_worker(keep) as worker:
            before = [
                await keep.submit_ingest([provider.url(f"/img/{owner}-b{i}.png")], owner=owner)
                for i in range(2)
            ]
            for job in before:
                assert (await keep.wait_for_job(job.id, wait=60)).status == "completed"

            s3.stop()
            during = [
                await keep.submit_ingest([provider.url(f"/img/{owner}-d{i}.png")], owner=owner)
                for i in range(4)
            ]

            async def outage_seen() -> bool:
                return worker.stats.store_outages >= 1

            await wait_until(outage_seen, 90, "the worker to notice the outage")
            # Accepted, waiting: none finished, none given up on.
            for job in during:
                assert (await keep.get_job(job.id)).status in ("queued", "running")

            s3.start()
            finals = [await keep.wait_for_job(job.id, wait=120) for job in during]
        assert [j.status for j in finals] == ["completed"] * 4
        assert any(j.attempts > 1 for j in finals)
        # Nothing lost, nothing twice: one asset per item, the store matching the records.
        assert await rows_for(keep, owner) == (6, 6)
        listed = await store_matches_records(keep, owner)
        assert len(listed) == 6
        for job in [*before, *finals]:
            item = (await keep.get_job(job.id)).items[0]
            asset = await keep.get(item.asset_id or "", owner=owner)
            assert asset.sha256 == item.sha256
    finally:
        await keep.close()
        s3.close()
