"""Durable jobs through the library: accepted before any work, run by workers under
leases, retried with backoff, failed with their last error, idempotent, exactly once."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
from PIL import Image
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select, update

from mediakeep import MediaKeep
from mediakeep.db.models import Asset, Job, JobEvent, JobItem, StoredObject, utcnow
from mediakeep.errors import (
    IdempotencyConflict,
    InvalidSignature,
    InvalidUrl,
    MediaKeepError,
    NotFound,
)
from mediakeep.jobs import background_worker, verify_callback
from mediakeep.jobs.repo import item_asset_id
from mediakeep.jobs.runner import retry_delay
from mediakeep.maintenance.gc import collect_garbage
from mediakeep.pipeline.sources import BytesSource, UrlSource
from mediakeep.pipeline.store import StoreRequest
from tests.core.helpers import keys_in_store, rows_for
from tests.jobs.conftest import Keeps
from tests.jobs.support import CallbackReceiver
from tests.support.provider import Provider, render_image


async def stored_assets(keep: MediaKeep, owner: str) -> list[str]:
    async with keep.repo.sessions() as s:
        rows = await s.execute(
            select(Asset.id).where(Asset.owner == owner, Asset.status == "stored")
        )
        return sorted(rows.scalars())


async def event_types(keep: MediaKeep, job_id: str) -> list[str]:
    return [e.type for e in await keep.job_events(job_id)]


async def until(check: Callable[[], Awaitable[bool]], wait: float = 30.0) -> None:
    for _ in range(int(wait / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the condition never held")


async def test_job_is_recorded_before_any_work_and_a_worker_finishes_it(
    keeps: Keeps, provider: Provider, owner: str
) -> None:
    keep = await keeps.open()
    urls = [provider.url(f"/img/{owner}-a.png"), provider.url(f"/img/{owner}-b.jpg")]
    job = await keep.submit_ingest(urls, owner=owner, collection="shots", metadata={"k": 1})
    # Accepted: in the database, nothing fetched or stored yet.
    assert job.status == "queued" and job.attempts == 0
    assert (await keep.get_job(job.id)).status == "queued"
    assert provider.hits(urls[0]) == 0
    assert await rows_for(keep, owner) == (0, 0)

    async with background_worker(keep):
        done = await keep.wait_for_job(job.id, wait=30)
    assert done.status == "completed" and done.attempts == 1
    assert [i.status for i in done.items] == ["stored", "stored"]
    # Each item lands under the id reserved for it when the job was accepted.
    assert [i.asset_id for i in done.items] == [item_asset_id(job.id, 0), item_asset_id(job.id, 1)]
    asset = await keep.get(item_asset_id(job.id, 1), owner=owner)
    assert asset.collection == "shots" and asset.metadata == {"k": 1}
    assert asset.content_type == "image/jpeg"
    types = await event_types(keep, job.id)
    assert types[:2] == ["queued", "started"] and types[-1] == "done"
    assert types.count("stored") == 2


async def test_idempotency_key_returns_the_same_job_and_stores_once(
    keeps: Keeps, provider: Provider, owner: str
) -> None:
    keep = await keeps.open()
    url = provider.url(f"/img/{owner}-idem.png")
    first = await keep.submit_ingest([url], owner=owner, idempotency_key="order-17")
    again = await keep.submit_ingest([url], owner=owner, idempotency_key="order-17")
    assert again.id == first.id and again.replayed and not first.replayed
    with pytest.raises(IdempotencyConflict):
        await keep.submit_ingest([url, url], owner=owner, idempotency_key="order-17")
    # Keys are per owner: another owner's identical key is another job.
    other = await keep.submit_ingest([url], owner=owner + "x", idempotency_key="order-17")
    assert other.id != first.id
    async with background_worker(keep):
        await keep.wait_for_job(first.id, wait=30)
        await keep.wait_for_job(other.id, wait=30)
    replay = await keep.submit_ingest([url], owner=owner, idempotency_key="order-17")
    assert replay.id == first.id and replay.status == "completed"
    assert len(await stored_assets(keep, owner)) == 1
    assert provider.hits(url) == 2  # one per owner, none for the replays


async def test_idempotency_key_expires(keeps: Keeps, provider: Provider, owner: str) -> None:
    keep = await keeps.open(idempotency_ttl=0)
    url = provider.url(f"/img/{owner}-ttl.png")
    first = await keep.submit_ingest([url], owner=owner, idempotency_key="k")
    second = await keep.submit_ingest([url], owner=owner, idempotency_key="k")
    assert second.id != first.id and not second.replayed
    # The old job keeps its history, without the key.
    assert (await keep.get_job(first.id)).idempotency_key is None


async def test_passing_failures_are_retried_with_backoff_until_they_succeed(
    keeps: Keeps, provider: Provider, owner: str
) -> None:
    # The fetcher gives up at once, so the job's own retries do the work.
    keep = await keeps.open(max_retries=0, job_retry_backoff=0.04, job_retry_max_backoff=0.1)
    url = provider.url(f"/flaky/{owner}?fail=3&code=503")
    job = await keep.submit_ingest([url], owner=owner)
    async with background_worker(keep):
        done = await keep.wait_for_job(job.id, wait=30)
    assert done.status == "completed" and done.attempts == 4
    events = await keep.job_events(job.id)
    delays = [e.data["delay"] for e in events if e.type == "retrying"]
    assert len(delays) == 3
    # Exponential, capped, jittered within the upper half of each step.
    for attempt, delay in enumerate(delays, start=1):
        step = min(0.1, 0.04 * 2 ** (attempt - 1))
        assert step / 2 - 1e-3 <= delay <= step + 1e-3
    failures = [e.data for e in events if e.type == "failed" and "index" in e.data]
    assert len(failures) == 3 and all(f["retrying"] for f in failures)
    assert failures[0]["error"]["code"] == "upstream_status"


def test_backoff_doubles_up_to_the_cap() -> None:
    for attempt in range(1, 12):
        step = min(30.0, 2.0 * 2 ** (attempt - 1))
        assert step / 2 <= retry_delay(attempt, 2.0, 30.0) <= step


async def test_a_job_that_keeps_failing_ends_failed_with_its_last_error(
    keeps: Keeps, provider: Provider, owner: str
) -> None:
    keep = await keeps.open(max_retries=0, job_max_attempts=3)
    good = provider.url(f"/img/{owner}-ok.png")
    job = await keep.submit_ingest(
        [provider.url(f"/flaky/{owner}?fail=100&code=503"), good], owner=owner
    )
    async with background_worker(keep):
        done = await keep.wait_for_job(job.id, wait=30)
    assert done.status == "partial" and done.attempts == 3
    assert done.last_error is not None and done.last_error["code"] == "upstream_status"
    assert done.items[0].status == "failed" and done.items[0].error == done.last_error
    assert done.items[1].status == "stored"
    # The good item was stored on the first attempt and never fetched again.
    assert provider.hits(good) == 1
    assert (await event_types(keep, job.id))[-1] == "done"

    only_bad = await keep.submit_ingest([provider.url("/status/500")], owner=owner)
    async with background_worker(keep):
        failed = await keep.wait_for_job(only_bad.id, wait=30)
    assert failed.status == "failed" and failed.attempts == 3
    assert (await event_types(keep, only_bad.id))[-1] == "failed"


async def test_permanent_failures_are_not_retried(
    keeps: Keeps, provider: Provider, owner: str
) -> None:
    keep = await keeps.open()
    job = await keep.submit_ingest(
        [provider.url(f"/status/404?o={owner}"), provider.url("/html-as-png")], owner=owner
    )
    async with background_worker(keep):
        done = await keep.wait_for_job(job.id, wait=30)
    assert done.status == "failed" and done.attempts == 1
    assert [i.error["code"] for i in done.items if i.error] == [
        "upstream_status",
        "unsupported_media_type",
    ]


async def test_sources_are_checked_when_submitted(keeps: Keeps, owner: str) -> None:
    keep = await keeps.open()
    with pytest.raises(InvalidUrl):
        await keep.submit_ingest(["file:///etc/passwd"], owner=owner)
    with pytest.raises(InvalidUrl):
        await keep.submit_ingest(["https://example.com/a.png"], owner=owner, callback_url="ftp://x")
    assert await keep.list_jobs(owner=owner) == []


async def test_inline_bytes_travel_in_the_job(keeps: Keeps, owner: str) -> None:
    keep = await keeps.open()
    data = render_image(f"{owner}-inline", "png")
    job = await keep.submit_ingest([data], owner=owner)
    assert job.items[0].source.startswith("data:application/octet-stream (")
    async with background_worker(keep):
        done = await keep.wait_for_job(job.id, wait=30)
    assert done.status == "completed"
    asset = await keep.get(done.items[0].asset_id or "", owner=owner)
    assert asset.size == len(data) and asset.content_type == "image/png"


async def test_a_dead_workers_job_is_taken_over_and_its_leftovers_cleaned(
    keeps: Keeps, provider: Provider, owner: str
) -> None:
    keep = await keeps.open(job_visibility_timeout=0.3, job_stale_write_after=0)
    url = provider.url(f"/img/{owner}-dead.png")
    job = await keep.submit_ingest([url], owner=owner)
    # A worker claims the job, starts the write (pending rows, half an object) and dies.
    [claimed] = await keep.job_repo.claim(worker="doomed", limit=1, visibility=0.3)
    asset_id = item_asset_id(job.id, 0)
    key = f"{owner}/default/{asset_id}.png"
    await keep.repo.begin_write(
        owner=owner,
        collection="default",
        slot=None,
        public=False,
        bucket=keep.settings.private_bucket,
        key=key,
        content_type="image/png",
        media_kind="image",
        source_url=url,
        provider=None,
        metadata={},
        asset_id=asset_id,
    )
    half = render_image(f"{owner}-dead", "png")[:500]
    await keep.store.put(
        keep.settings.private_bucket, key, half, content_type="image/png", cache_control="x"
    )
    async with background_worker(keep):
        done = await keep.wait_for_job(job.id, wait=30)
    assert done.status == "completed" and done.attempts == 2
    started = [e.data for e in await keep.job_events(job.id) if e.type == "started"]
    assert [s["reclaimed"] for s in started] == [False, True]
    assert started[0]["worker"] == "doomed" and claimed.lease.attempt == 1
    # Exactly one asset, whole, and the store holds exactly what the records name.
    assert await stored_assets(keep, owner) == [asset_id]
    asset = await keep.get(asset_id, owner=owner)
    assert asset.size == len(render_image(f"{owner}-dead", "png"))
    assert await rows_for(keep, owner) == (1, 1)
    assert await keys_in_store(keep, owner) == [f"{keep.settings.private_bucket}/{asset.key}"]


async def test_a_write_that_may_still_be_running_is_waited_for_not_redone(
    keeps: Keeps, provider: Provider, owner: str
) -> None:
    keep = await keeps.open(job_visibility_timeout=0.3, job_stale_write_after=600)
    url = provider.url(f"/img/{owner}-young.png")
    job = await keep.submit_ingest([url], owner=owner)
    await keep.job_repo.claim(worker="stalled", limit=1, visibility=0.3)
    asset_id = item_asset_id(job.id, 0)
    await keep.repo.begin_write(
        owner=owner,
        collection="default",
        slot=None,
        public=False,
        bucket=keep.settings.private_bucket,
        key=f"{owner}/default/{asset_id}.png",
        content_type="image/png",
        media_kind="image",
        source_url=url,
        provider=None,
        metadata={},
        asset_id=asset_id,
    )

    async def waiting() -> bool:
        return "waiting" in await event_types(keep, job.id)

    async with background_worker(keep):
        await until(waiting)
    # The takeover found a write that may still be running: it waits for it rather than
    # redoing it, without using up an attempt (only the stalled worker's counts).
    held = await keep.get_job(job.id)
    assert held.status == "queued" and held.attempts == 1
    assert (held.run_at - utcnow()).total_seconds() > 500
    assert provider.hits(url) == 0 and await stored_assets(keep, owner) == []

    # Later the write is as old as only a dead one can be: it is cleaned up and redone.
    async with keep.repo.sessions.begin() as s:
        await s.execute(
            update(Asset)
            .where(Asset.id == asset_id)
            .values(created_at=utcnow() - timedelta(seconds=700))
        )
        await s.execute(update(Job).where(Job.id == job.id).values(run_at=utcnow()))
    async with background_worker(keep):
        done = await keep.wait_for_job(job.id, wait=30)
    assert done.status == "completed" and done.attempts == 2
    assert await stored_assets(keep, owner) == [asset_id]
    assert await rows_for(keep, owner) == (1, 1)


async def test_a_stale_workers_late_completion_cannot_store_twice(
    keeps: Keeps, provider: Provider, owner: str
) -> None:
    keep = await keeps.open()
    url = provider.url(f"/img/{owner}-late.png")
    job = await keep.submit_ingest([url], owner=owner)
    asset_id = item_asset_id(job.id, 0)
    # Worker A claims the job, stores the item under its reserved id, and stalls before
    # recording it: its lease runs out.
    [claimed] = await keep.job_repo.claim(worker="A", limit=1, visibility=0.2)
    req = StoreRequest(owner=owner, collection="default", asset_id=asset_id)
    await keep.pipeline.run(UrlSource(url), req)
    before = await keys_in_store(keep, owner)
    # A second completion of the same item fails on the primary key, leaving nothing.
    with pytest.raises(sa_exc.IntegrityError):
        await keep.pipeline.run(UrlSource(url), req)
    assert await keys_in_store(keep, owner) == before
    # Worker B takes the job over and adopts A's asset instead of fetching again.
    hits = provider.hits(url)
    async with background_worker(keep):
        done = await keep.wait_for_job(job.id, wait=30)
    assert done.status == "completed" and done.items[0].asset_id == asset_id
    assert provider.hits(url) == hits
    assert await stored_assets(keep, owner) == [asset_id]
    # A's lease is no longer good for anything.
    assert not await keep.job_repo.record_item(claimed.lease, 0, status="failed")
    assert not await keep.job_repo.renew(claimed.lease, 5)
    async with keep.repo.sessions() as s:
        objects = await s.scalar(select(func.count()).where(StoredObject.owner == owner))
    assert objects == 1


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (300, 200), (40, 90, 160)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _garbled_jpeg() -> bytes:
    data = _jpeg()
    dht = data.index(b"\xff\xc4")
    # Intact structure (it passes every check before the upload); only a decode fails.
    return data[: dht + 5] + b"\xff" * 16 + data[dht + 21 :]


async def test_a_failed_attempts_late_delete_cannot_remove_the_retrys_object(
    keeps: Keeps, owner: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    keep = await keeps.open(max_retries=0)
    asset_id = item_asset_id("late-delete", 0)
    req = StoreRequest(owner=owner, collection="default", asset_id=asset_id)
    # The first attempt's image turns out undecodable (a garbled Huffman table) after its
    # upload, so its rollback deletes what it wrote. That delete reaches the store late, as
    # one retried through an outage or outliving the deadline that gave up on it does: held
    # back here, sent below.
    late: list[tuple[str, str]] = []

    async def held_back(bucket: str, key: str) -> None:
        late.append((bucket, key))

    real_delete = keep.store.delete
    monkeypatch.setattr(keep.store, "delete", held_back)
    with pytest.raises(MediaKeepError):
        await keep.pipeline.run(BytesSource(_garbled_jpeg()), req)
    assert late, "the failed attempt deleted nothing"
    monkeypatch.setattr(keep.store, "delete", real_delete)

    # The retry: the same type, so the same key but for the fix.
    stored = await keep.pipeline.run(BytesSource(_jpeg()), req)
    for bucket, key in late:
        await keep.store.delete(bucket, key)
    # The retry's object survives the stale delete, whole.
    asset = stored.asset
    assert asset.id == asset_id
    assert await keys_in_store(keep, owner) == [f"{asset.bucket}/{asset.key}"]
    head = await keep.store.head(asset.bucket, asset.key)
    assert head is not None and head.size == len(_jpeg())


async def test_completion_callback_is_signed_and_retried(
    keeps: Keeps, provider: Provider, receiver: CallbackReceiver, owner: str
) -> None:
    keep = await keeps.open(callback_secret="cb-secret")
    job = await keep.submit_ingest(
        [provider.url(f"/img/{owner}-cb.png")], owner=owner, callback_url=receiver.url
    )

    async def delivered() -> bool:
        cb = (await keep.get_job(job.id)).callback
        return cb is not None and cb.status == "delivered"

    async with background_worker(keep):
        await keep.wait_for_job(job.id, wait=30)
        await until(delivered)
    final = await keep.get_job(job.id)
    assert final.callback is not None and final.callback.status == "delivered"
    assert final.callback.attempts == 3 and len(receiver.received) == 3
    delivered = receiver.received[-1]
    verify_callback("cb-secret", delivered.body, delivered.headers["Mediakeep-Signature"])
    assert delivered.headers["Mediakeep-Event"] == "job.completed"
    assert delivered.headers["Mediakeep-Delivery-Attempt"] == "3"
    payload = json.loads(delivered.body)
    assert payload["job"]["id"] == job.id and payload["job"]["status"] == "completed"
    assert payload["job"]["items"][0]["content_url"].endswith("/content")
    with pytest.raises(InvalidSignature):
        verify_callback(
            "cb-secret", delivered.body + b" ", delivered.headers["Mediakeep-Signature"]
        )
    with pytest.raises(InvalidSignature):
        verify_callback("other", delivered.body, delivered.headers["Mediakeep-Signature"])


async def test_gc_removes_finished_jobs_past_retention_and_keeps_their_assets(
    keeps: Keeps, provider: Provider, owner: str
) -> None:
    keep = await keeps.open(job_retention=7 * 86400, idempotency_ttl=86400)
    jobs = {
        name: await keep.submit_ingest([provider.url(f"/img/{owner}-{name}.png")], owner=owner)
        for name in ("old", "recent", "calling_back")
    }
    async with background_worker(keep):
        done = {name: await keep.wait_for_job(j.id, wait=30) for name, j in jobs.items()}
    queued = await keep.submit_ingest([provider.url(f"/img/{owner}-queued.png")], owner=owner)
    long_ago = utcnow() - timedelta(days=8)
    async with keep.repo.sessions.begin() as s:
        for name in ("old", "calling_back"):
            await s.execute(
                update(Job)
                .where(Job.id == jobs[name].id)
                .values(finished_at=long_ago, created_at=long_ago)
            )
        # Its completion callback is still being delivered: the job stays until it is done.
        await s.execute(
            update(Job).where(Job.id == jobs["calling_back"].id).values(callback_status="pending")
        )
        await s.execute(update(Job).where(Job.id == queued.id).values(created_at=long_ago))

    dry = await collect_garbage(keep, grace=timedelta(hours=1), dry_run=True)
    assert dry.old_jobs == 1
    assert (await keep.get_job(jobs["old"].id)).status == "completed"

    report = await collect_garbage(keep, grace=timedelta(hours=1))
    assert report.old_jobs == 1 and not report.errors
    with pytest.raises(NotFound):
        await keep.get_job(jobs["old"].id)
    async with keep.repo.sessions() as s:
        for table in (JobEvent, JobItem):
            left = await s.scalar(
                select(func.count()).select_from(table).where(table.job_id == jobs["old"].id)
            )
            assert left == 0, table.__tablename__
    for name in ("recent", "calling_back"):
        assert (await keep.get_job(jobs[name].id)).status == "completed"
    assert (await keep.get_job(queued.id)).status == "queued"
    # History goes, media stays.
    stored = await keep.get(done["old"].items[0].asset_id or "", owner=owner)
    assert stored.size == len(render_image(f"{owner}-old", "png"))


async def test_job_retention_zero_keeps_every_job(
    keeps: Keeps, provider: Provider, owner: str
) -> None:
    keep = await keeps.open(job_retention=0, idempotency_ttl=0)
    job = await keep.submit_ingest([provider.url(f"/img/{owner}-forever.png")], owner=owner)
    async with background_worker(keep):
        await keep.wait_for_job(job.id, wait=30)
    async with keep.repo.sessions.begin() as s:
        long_ago = utcnow() - timedelta(days=3650)
        await s.execute(
            update(Job).where(Job.id == job.id).values(finished_at=long_ago, created_at=long_ago)
        )
    assert (await collect_garbage(keep, grace=timedelta(0))).old_jobs == 0
    assert (await keep.get_job(job.id)).status == "completed"


async def test_a_job_inside_its_idempotency_window_is_kept_whatever_the_retention(
    keeps: Keeps, provider: Provider, owner: str
) -> None:
    keep = await keeps.open(job_retention=1, idempotency_ttl=86400)
    url = provider.url(f"/img/{owner}-idem-kept.png")
    job = await keep.submit_ingest([url], owner=owner, idempotency_key="k1")
    async with background_worker(keep):
        await keep.wait_for_job(job.id, wait=30)
    async with keep.repo.sessions.begin() as s:
        await s.execute(
            update(Job).where(Job.id == job.id).values(finished_at=utcnow() - timedelta(hours=1))
        )
    assert (await collect_garbage(keep, grace=timedelta(0))).old_jobs == 0
    # A replay still finds the job instead of storing the item a second time.
    again = await keep.submit_ingest([url], owner=owner, idempotency_key="k1")
    assert again.id == job.id and again.replayed
