"""Running one claimed job: each item through the store pipeline under its reserved asset
id, then the job's fate (done, retried later, or given up) recorded under its lease."""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import exc as sa_exc

from ..db.models import utcnow
from ..errors import (
    DownloadTimeout,
    MediaKeepError,
    NotFound,
    SizeMismatch,
    StoreError,
    UnsupportedOperation,
    UploadSizeMismatch,
    database_unavailable,
)
from ..models import AssetInfo
from ..pipeline.store import StoreRequest
from ..waiting import event_within
from .repo import Claimed, JobRepository, Lease, item_asset_id
from .sources import source_for
from .types import JobInfo, JobItemInfo

if TYPE_CHECKING:
    from ..keep import MediaKeep

log = logging.getLogger("mediakeep.jobs")
PROGRESS_INTERVAL = 0.25

Kind = Literal["ok", "failed", "retry", "defer", "lost"]


@dataclass
class ItemOutcome:
    kind: Kind
    error: dict[str, Any] | None = None
    until: datetime | None = None
    store_suspect: bool = False


@dataclass
class RunResult:
    status: str  # a terminal job status, "queued" (to be retried) or "lost"
    job: JobInfo | None = None
    store_suspect: bool = False


def retry_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter in its upper half: spread out, never immediate."""
    delay = min(cap, base * (2 ** max(0, attempt - 1)))
    return random.uniform(delay / 2, delay)


def classify(exc: BaseException) -> tuple[bool, bool]:
    """(retry later?, might the object store be down?) for a failed item."""
    if isinstance(exc, MediaKeepError):
        if isinstance(exc, UploadSizeMismatch | UnsupportedOperation):
            return False, False
        if isinstance(exc, StoreError):
            # Missing buckets and refused credentials are fixed by an operator, not by the
            # job: worth waiting for too, within the attempts.
            return True, True
        if isinstance(exc, DownloadTimeout):
            # The whole-transfer deadline also fires when the store stalls mid-upload.
            return True, True
        if isinstance(exc, SizeMismatch):
            return True, False  # a body cut short
        if isinstance(exc, NotFound) and "pending write" in exc.message:
            return True, False
        return exc.retryable, False
    if isinstance(exc, sa_exc.DBAPIError | OSError | TimeoutError):
        return True, False
    return True, False  # a bug: retried within the attempts, and logged


def _error(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, MediaKeepError):
        return exc.to_dict()
    busy = database_unavailable(exc)
    if busy is not None:
        return busy.to_dict()
    return {"code": "internal_error", "message": type(exc).__name__}


class JobRunner:
    def __init__(self, keep: MediaKeep, repo: JobRepository) -> None:
        self.keep = keep
        self.repo = repo
        s = keep.settings
        self.stale_after = timedelta(
            seconds=s.job_stale_write_after
            if s.job_stale_write_after is not None
            else s.download_timeout + 60
        )
        # Asset ids whose write this process attempted and saw fail: their leftovers are
        # known dead and may be cleaned at once instead of after ``stale_after``.
        self.dead_writes: set[str] = set()

    async def run(self, claimed: Claimed) -> RunResult:
        job, lease = claimed.job, claimed.lease
        pending = [i for i in job.items if i.status == "pending"]
        progress: dict[int, tuple[int, int | None]] = {}
        limit = asyncio.Semaphore(max(1, self.keep.settings.ingest_concurrency))

        async def one(item: JobItemInfo) -> ItemOutcome:
            async with limit:
                return await self._item(job, lease, item, claimed.sources[item.index], progress)

        done = asyncio.Event()
        flusher = asyncio.create_task(self._report_progress(job, progress, done))
        try:
            outcomes = await asyncio.gather(*(one(i) for i in pending))
        finally:
            # Asked to stop, not cancelled: a write it has begun runs to its end (a
            # statement cut off by cancellation costs a connection, see db/engine.py).
            done.set()
            await asyncio.shield(flusher)
        results = dict(zip((i.index for i in pending), outcomes, strict=True))
        return await self._settle(job, lease, results)

    # -- one item ------------------------------------------------------------------------

    async def _item(
        self,
        job: JobInfo,
        lease: Lease,
        item: JobItemInfo,
        text: str,
        progress: dict[int, tuple[int, int | None]],
    ) -> ItemOutcome:
        asset_id = item_asset_id(job.id, item.index)
        will_retry = lease.attempt < job.max_attempts
        try:
            earlier = await self._earlier_write(asset_id)
        except Exception as exc:
            retry, suspect = classify(exc)
            return await self._failed(job, lease, item, exc, retry, suspect, will_retry)
        if isinstance(earlier, ItemOutcome):
            return earlier
        if earlier is not None:
            return await self._stored(lease, item, earlier, "stored")
        opts = job.options
        req = StoreRequest(
            owner=job.owner,
            collection=opts.get("collection") or self.keep.settings.default_collection,
            slot=opts.get("slot"),
            public=bool(opts.get("public")),
            provider=opts.get("provider"),
            metadata=dict(opts.get("metadata") or {}),
            asset_id=asset_id,
        )

        def on_bytes(got: int, total: int | None) -> None:
            progress[item.index] = (got, total)

        started = utcnow()
        try:
            source = source_for(text, self.keep.settings.max_file_size)
            stored = await self.keep.pipeline.run(source, req, on_bytes)
        except sa_exc.IntegrityError:
            # The reserved id is taken: another attempt wrote (or is writing) this item.
            again = await self._earlier_write(asset_id)
            if isinstance(again, AssetInfo):
                return await self._stored(lease, item, again, "stored")
            if isinstance(again, ItemOutcome):
                return again
            return ItemOutcome("retry", {"code": "conflict", "message": "concurrent write"})
        except Exception as exc:
            await self._forget_own_write(asset_id, started)
            retry, suspect = classify(exc)
            if not isinstance(exc, MediaKeepError):
                log.exception("unexpected error in job %s item %d", job.id, item.index)
            return await self._failed(job, lease, item, exc, retry, suspect, will_retry)
        status = "deduplicated" if stored.deduplicated else "stored"
        return await self._stored(lease, item, stored.asset, status)

    async def _earlier_write(self, asset_id: str) -> AssetInfo | ItemOutcome | None:
        """What an earlier attempt at this item left: the stored asset (adopt it), a write
        that may still be running (wait for it), or nothing (go ahead). A write that died
        is cleaned up first: its partial object deleted, its rows removed."""
        state = await self.repo.asset_state(asset_id)
        if state is None:
            return None
        if state.status == "stored":
            return await self.keep.repo.get(asset_id)
        if asset_id not in self.dead_writes:
            until = state.created_at + self.stale_after
            if until > utcnow():
                return ItemOutcome("defer", until=until)
        if state.bucket and state.key:
            await self.keep.store.delete(state.bucket, state.key)
        await self.repo.drop_leftover(asset_id, state.object_id)
        self.dead_writes.discard(asset_id)
        return None

    async def _forget_own_write(self, asset_id: str, started: datetime) -> None:
        """After our own write failed: the pipeline rolled back, unless the store was down
        for that too. Our leftover is then known dead; clean it now, or on the next try."""
        try:
            state = await self.repo.asset_state(asset_id)
            if state is None or state.status != "pending" or state.created_at < started:
                return
            self.dead_writes.add(asset_id)
            if state.bucket and state.key:
                await self.keep.store.delete(state.bucket, state.key)
            await self.repo.drop_leftover(asset_id, state.object_id)
            self.dead_writes.discard(asset_id)
        except Exception:
            log.info("leftover of a failed write kept for the next attempt", exc_info=True)

    async def _stored(
        self, lease: Lease, item: JobItemInfo, asset: AssetInfo, status: str
    ) -> ItemOutcome:
        event = {
            "index": item.index,
            "source": item.source,
            "asset_id": asset.id,
            "status": status,
            "size": asset.size,
            "sha256": asset.sha256,
            "content_type": asset.content_type,
        }
        held = await self.repo.record_item(
            lease, item.index, status=status, asset=asset, event=("stored", event)
        )
        return ItemOutcome("ok") if held else ItemOutcome("lost")

    async def _failed(
        self,
        job: JobInfo,
        lease: Lease,
        item: JobItemInfo,
        exc: BaseException,
        retry: bool,
        suspect: bool,
        will_retry: bool,
    ) -> ItemOutcome:
        error = _error(exc)
        event = {"index": item.index, "source": item.source, "error": error}
        if retry:
            event["retrying"] = will_retry
            await self._event(job.id, "failed", event)
            return ItemOutcome("retry", error, store_suspect=suspect)
        event["retrying"] = False
        held = await self.repo.record_item(
            lease, item.index, status="failed", error=error, event=("failed", event)
        )
        return ItemOutcome("failed", error) if held else ItemOutcome("lost")

    async def _event(self, job_id: str, type_: str, data: dict[str, Any]) -> None:
        try:
            await self.repo.add_events(job_id, [(type_, data)])
        except Exception:
            log.warning("could not record a job event", exc_info=True)

    async def _report_progress(
        self, job: JobInfo, progress: dict[int, tuple[int, int | None]], done: asyncio.Event
    ) -> None:
        """Turn byte counts into ``downloading`` events, at most one per item per interval
        (the database is the channel: any server can stream them)."""
        labels = {i.index: i.source for i in job.items}
        sent: dict[int, tuple[int, int | None]] = {}
        while not await event_within(done, PROGRESS_INTERVAL):
            batch = []
            for index, value in list(progress.items()):
                if sent.get(index) != value:
                    sent[index] = value
                    batch.append(
                        (
                            "downloading",
                            {
                                "index": index,
                                "source": labels.get(index, ""),
                                "bytes_done": value[0],
                                "bytes_total": value[1],
                            },
                        )
                    )
            try:
                await self.repo.add_events(job.id, batch)
            except Exception:
                log.warning("could not record progress", exc_info=True)

    # -- the job's fate ------------------------------------------------------------------

    async def _settle(
        self, job: JobInfo, lease: Lease, outcomes: dict[int, ItemOutcome]
    ) -> RunResult:
        if any(o.kind == "lost" for o in outcomes.values()):
            return RunResult("lost")
        s = self.keep.settings
        suspect = any(o.store_suspect for o in outcomes.values())
        retry = {i: o for i, o in outcomes.items() if o.kind == "retry"}
        waits = [o.until for o in outcomes.values() if o.kind == "defer" and o.until]
        first_error = next(
            (o.error for o in outcomes.values() if o.error is not None),
            None,
        )
        now = utcnow()
        if waits:
            # Not the job's fault: an earlier attempt's write may still be running, and
            # only time tells. This attempt does not count.
            until = max(waits)
            held = await self.repo.requeue(
                lease,
                run_at=until,
                last_error=first_error,
                refund=True,
                event=(
                    "waiting",
                    {"until": until.isoformat(), "reason": "an earlier write may be running"},
                ),
            )
            return RunResult("queued" if held else "lost", store_suspect=suspect)
        if retry and lease.attempt < job.max_attempts:
            delay = retry_delay(lease.attempt, s.job_retry_backoff, s.job_retry_max_backoff)
            run_at = now + timedelta(seconds=delay)
            held = await self.repo.requeue(
                lease,
                run_at=run_at,
                last_error=first_error,
                refund=False,
                event=(
                    "retrying",
                    {
                        "attempt": lease.attempt,
                        "next_attempt_at": run_at.isoformat(),
                        "delay": round(delay, 3),
                        "items": sorted(retry),
                        "error": first_error,
                    },
                ),
            )
            return RunResult("queued" if held else "lost", store_suspect=suspect)
        fail = {i: o.error or {"code": "internal_error", "message": ""} for i, o in retry.items()}
        info = await self.repo.complete(lease, last_error=first_error, fail=fail)
        if info is None:
            return RunResult("lost")
        return RunResult(info.status, info, store_suspect=suspect)
