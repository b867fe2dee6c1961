"""Every database read and write of the job queue.

A worker owns a job through a lease: a random token plus ``locked_until``. Every write a
worker makes about a job is conditional on still holding that token, so a worker that
lost its lease (it stalled, and another worker took the job over) changes nothing."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, event, func, or_, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from ..db.models import Asset, Job, JobEvent, JobItem, StoredObject, utcnow
from ..errors import IdempotencyConflict, NotFound
from ..models import AssetInfo
from .hooks import hooks_for
from .signals import JobSignals
from .types import TERMINAL, CallbackInfo, JobEventInfo, JobInfo, JobItemInfo, aware

# Fixed forever: item asset ids are derived from it, and must not change between versions.
JOB_NAMESPACE = uuid.UUID("6f1c2a4e-8d3b-5c7a-9e2f-4b6d8a0c1e3f")
BeforeCommit = Callable[[AsyncSession, Job], Awaitable[None]]


# Session.info key: the jobs whose events this transaction wrote.
_TOUCHED = "mediakeep_jobs_with_events"


def item_asset_id(job_id: str, position: int) -> str:
    """The asset id an item is stored under, whichever worker stores it: a second store of
    the same item collides on the assets primary key instead of storing it twice."""
    return str(uuid.uuid5(JOB_NAMESPACE, f"{job_id}:{position}"))


@dataclass
class NewItem:
    source: str
    label: str


@dataclass(frozen=True)
class Lease:
    job_id: str
    token: str
    attempt: int


@dataclass
class Claimed:
    lease: Lease
    job: JobInfo
    sources: dict[int, str]  # position -> source, for the items still to do
    reclaimed: bool


@dataclass
class AssetState:
    status: str
    created_at: datetime
    object_id: str | None
    bucket: str | None
    key: str | None


@dataclass
class CallbackClaim:
    job_id: str
    url: str
    attempt: int


def _item_info(row: JobItem) -> JobItemInfo:
    done = row.status in ("stored", "deduplicated")
    return JobItemInfo(
        index=row.position,
        source=row.label,
        status=row.status,
        asset_id=row.asset_id if done else None,
        size=row.size,
        sha256=row.sha256,
        content_type=row.content_type,
        error=row.error,
        attempts=row.attempts,
    )


def _info(job: Job, items: Sequence[JobItem], replayed: bool = False) -> JobInfo:
    callback = None
    if job.callback_url:
        callback = CallbackInfo(
            url=job.callback_url,
            status=job.callback_status or "pending",
            attempts=job.callback_attempts,
            last_error=job.callback_last_error,
        )
    return JobInfo(
        id=job.id,
        owner=job.owner,
        kind=job.kind,
        status=job.status,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        items=[_item_info(i) for i in sorted(items, key=lambda i: i.position)],
        last_error=job.last_error,
        created_at=aware(job.created_at),
        updated_at=aware(job.updated_at),
        finished_at=aware(job.finished_at) if job.finished_at else None,
        run_at=aware(job.run_at),
        options=dict(job.options or {}),
        generation_id=job.generation_id,
        idempotency_key=job.idempotency_key,
        callback=callback,
        replayed=replayed,
    )


class JobRepository:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        dialect: str,
        reads: async_sessionmaker[AsyncSession] | None = None,
        signals: JobSignals | None = None,
    ) -> None:
        self.sessions = sessions
        self.reads = reads or sessions
        self.signals = signals
        self._lock_rows = dialect == "postgresql"

    def for_update(self, stmt: Any, *, skip_locked: bool = False) -> Any:
        # SQLite serialises writers with BEGIN IMMEDIATE; PostgreSQL needs row locks, and
        # SKIP LOCKED lets many workers claim different jobs at once without waiting.
        if not self._lock_rows:
            return stmt
        return stmt.with_for_update(skip_locked=skip_locked)

    async def _items(self, s: AsyncSession, job_id: str) -> list[JobItem]:
        rows = await s.execute(
            select(JobItem).where(JobItem.job_id == job_id).order_by(JobItem.position)
        )
        return list(rows.scalars())

    def _event(self, s: AsyncSession, job_id: str, type_: str, data: dict[str, Any]) -> None:
        s.add(JobEvent(job_id=job_id, type=type_, data=data, created_at=utcnow()))
        if self.signals is None:
            return
        touched: set[str] | None = s.info.get(_TOUCHED)
        if touched is None:
            touched = s.info[_TOUCHED] = set()
            # Readers are woken once the events are visible to them: after the commit,
            # never for a transaction that rolls back.
            event.listen(s.sync_session, "after_commit", self._committed, once=True)
        touched.add(job_id)

    def _committed(self, session: Session) -> None:
        touched = session.info.pop(_TOUCHED, None)
        if touched and self.signals is not None:
            self.signals.notify(touched)

    # -- accepting -----------------------------------------------------------------------

    async def create(
        self,
        *,
        job_id: str,
        owner: str,
        kind: str,
        items: Sequence[NewItem],
        options: dict[str, Any],
        max_attempts: int,
        callback_url: str | None,
        idempotency_key: str | None,
        request_hash: str,
        idempotency_ttl: float,
        generation_id: str | None = None,
        lease_for: str | None = None,
        visibility: float = 60.0,
        before_commit: BeforeCommit | None = None,
    ) -> tuple[JobInfo, Lease | None]:
        """Record a job and its items in one transaction. With ``lease_for`` the job starts
        out running, leased to that worker (a caller that runs it at once, durably). An
        Idempotency-Key seen within its lifetime returns the job it made instead."""
        for _attempt in range(3):
            try:
                return await self._create_once(
                    job_id=job_id,
                    owner=owner,
                    kind=kind,
                    items=items,
                    options=options,
                    max_attempts=max_attempts,
                    callback_url=callback_url,
                    idempotency_key=idempotency_key,
                    request_hash=request_hash,
                    idempotency_ttl=idempotency_ttl,
                    generation_id=generation_id,
                    lease_for=lease_for,
                    visibility=visibility,
                    before_commit=before_commit,
                )
            except sa_exc.IntegrityError:
                if idempotency_key is None:
                    raise
                continue  # a concurrent request with the same key won: return its job
        raise IdempotencyConflict("the Idempotency-Key is being used by concurrent requests")

    async def _create_once(
        self,
        *,
        job_id: str,
        owner: str,
        kind: str,
        items: Sequence[NewItem],
        options: dict[str, Any],
        max_attempts: int,
        callback_url: str | None,
        idempotency_key: str | None,
        request_hash: str,
        idempotency_ttl: float,
        generation_id: str | None,
        lease_for: str | None,
        visibility: float,
        before_commit: BeforeCommit | None,
    ) -> tuple[JobInfo, Lease | None]:
        now = utcnow()
        async with self.sessions.begin() as s:
            if idempotency_key is not None:
                existing = (
                    await s.execute(
                        self.for_update(
                            select(Job).where(
                                Job.owner == owner, Job.idempotency_key == idempotency_key
                            )
                        )
                    )
                ).scalar_one_or_none()
                if existing is not None:
                    if aware(existing.created_at) > now - timedelta(seconds=idempotency_ttl):
                        if existing.request_hash != request_hash:
                            raise IdempotencyConflict(
                                "this Idempotency-Key was used for a different request"
                            )
                        return _info(existing, await self._items(s, existing.id), True), None
                    # Past its lifetime the key is free again; the old job keeps its history.
                    existing.idempotency_key = None
                    await s.flush()
            lease = None
            job = Job(
                id=job_id,
                owner=owner,
                kind=kind,
                status="queued",
                options=options,
                attempts=0,
                max_attempts=max_attempts,
                run_at=now,
                idempotency_key=idempotency_key,
                request_hash=request_hash,
                callback_url=callback_url,
                callback_attempts=0,
                generation_id=generation_id,
                items_total=len(items),
                created_at=now,
                updated_at=now,
            )
            if lease_for is not None:
                lease = Lease(job_id, str(uuid.uuid4()), 1)
                job.status = "running"
                job.attempts = 1
                job.lease_token = lease.token
                job.locked_until = now + timedelta(seconds=visibility)
                job.worker = lease_for[:128]
            if before_commit is not None:
                await before_commit(s, job)
            s.add(job)
            await s.flush()
            rows = [
                JobItem(
                    job_id=job_id,
                    position=i,
                    source=item.source,
                    label=item.label[:512],
                    asset_id=item_asset_id(job_id, i),
                    status="pending",
                    attempts=0,
                    updated_at=now,
                )
                for i, item in enumerate(items)
            ]
            s.add_all(rows)
            self._event(s, job_id, "queued", {"items": len(items), "kind": kind})
            if lease is not None:
                self._event(s, job_id, "started", {"attempt": 1, "worker": lease_for})
                await s.flush()
                hooks = hooks_for(kind)
                if hooks.on_start is not None:
                    await hooks.on_start(s, job)
            await s.flush()
            return _info(job, rows), lease

    # -- reading -------------------------------------------------------------------------

    async def get(self, job_id: str, owner: str | None = None) -> JobInfo:
        stmt = select(Job).where(Job.id == job_id)
        if owner is not None:
            stmt = stmt.where(Job.owner == owner)
        async with self.reads() as s:
            job = (await s.execute(stmt)).scalar_one_or_none()
            if job is None:
                raise NotFound("no such job")
            return _info(job, await self._items(s, job.id))

    async def list_for(
        self, owner: str, *, status: str | None = None, limit: int = 50
    ) -> list[JobInfo]:
        stmt = select(Job).where(Job.owner == owner)
        if status is not None:
            stmt = stmt.where(Job.status == status)
        stmt = stmt.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
        async with self.reads() as s:
            jobs = list((await s.execute(stmt)).scalars())
            if not jobs:
                return []
            rows = await s.execute(
                select(JobItem)
                .where(JobItem.job_id.in_([j.id for j in jobs]))
                .order_by(JobItem.position)
            )
            by_job: dict[str, list[JobItem]] = {}
            for item in rows.scalars():
                by_job.setdefault(item.job_id, []).append(item)
            return [_info(j, by_job.get(j.id, [])) for j in jobs]

    async def events(self, job_id: str, *, after: int = 0, limit: int = 500) -> list[JobEventInfo]:
        async with self.reads() as s:
            rows = await s.execute(
                select(JobEvent)
                .where(JobEvent.job_id == job_id, JobEvent.id > after)
                .order_by(JobEvent.id)
                .limit(limit)
            )
            return [
                JobEventInfo(e.id, e.job_id, e.type, dict(e.data or {}), aware(e.created_at))
                for e in rows.scalars()
            ]

    async def add_events(self, job_id: str, events: Sequence[tuple[str, dict[str, Any]]]) -> None:
        if not events:
            return
        async with self.sessions.begin() as s:
            # Every event write holds the job's row lock, so a job's events commit in id
            # order: a reader that has seen id N never later finds a smaller one appear.
            await s.execute(self.for_update(select(Job.id).where(Job.id == job_id)))
            for type_, data in events:
                self._event(s, job_id, type_, data)

    async def nothing_left(self) -> bool:
        """No job waiting or running, and no callback still to deliver."""
        async with self.reads() as s:
            found = await s.scalar(
                select(Job.id)
                .where(
                    or_(
                        Job.status.in_(("queued", "running")),
                        Job.callback_status == "pending",
                    )
                )
                .limit(1)
            )
        return found is None

    async def next_due(self) -> datetime | None:
        """When the earliest waiting job or callback becomes due (None: nothing waits)."""
        async with self.reads() as s:
            job = await s.scalar(
                select(Job.run_at).where(Job.status == "queued").order_by(Job.run_at).limit(1)
            )
            lease = await s.scalar(
                select(Job.locked_until)
                .where(Job.status == "running")
                .order_by(Job.locked_until)
                .limit(1)
            )
            cb = await s.scalar(
                select(Job.callback_next_at)
                .where(Job.callback_status == "pending")
                .order_by(Job.callback_next_at)
                .limit(1)
            )
        found = [aware(t) for t in (job, lease, cb) if t is not None]
        return min(found) if found else None

    # -- claiming and leases -------------------------------------------------------------

    async def claim(self, *, worker: str, limit: int, visibility: float) -> list[Claimed]:
        """Take up to ``limit`` due jobs: queued ones whose time has come, and running ones
        whose worker stopped renewing its lease (it died). Concurrent workers never get the
        same job: rows are locked FOR UPDATE SKIP LOCKED (PostgreSQL) or the whole claim
        runs under SQLite's write lock."""
        if limit <= 0:
            return []
        now = utcnow()
        claimed: list[Claimed] = []
        async with self.sessions.begin() as s:
            ids = list(
                (
                    await s.execute(
                        self.for_update(
                            select(Job.id)
                            .where(
                                or_(
                                    and_(Job.status == "queued", Job.run_at <= now),
                                    and_(Job.status == "running", Job.locked_until < now),
                                )
                            )
                            .order_by(Job.run_at)
                            .limit(limit),
                            skip_locked=True,
                        )
                    )
                ).scalars()
            )
            for job_id in ids:
                job = await s.get(Job, job_id)
                assert job is not None
                reclaimed = job.status == "running"
                job.attempts += 1
                job.updated_at = now
                if job.attempts > job.max_attempts:
                    # Its workers keep dying on it (or it was retried out): stop here.
                    error = {
                        "code": "attempts_exhausted",
                        "message": f"gave up after {job.max_attempts} attempts",
                    }
                    if reclaimed:
                        error["message"] += "; the last worker stopped without finishing"
                    items = await self._items(s, job.id)
                    await self._finish(s, job, items, error, fail_pending=True)
                    continue
                token = str(uuid.uuid4())
                job.status = "running"
                job.lease_token = token
                job.locked_until = now + timedelta(seconds=visibility)
                job.worker = worker[:128]
                self._event(
                    s,
                    job.id,
                    "started",
                    {"attempt": job.attempts, "worker": worker, "reclaimed": reclaimed},
                )
                hooks = hooks_for(job.kind)
                if hooks.on_start is not None:
                    await hooks.on_start(s, job)
                items = await self._items(s, job.id)
                claimed.append(
                    Claimed(
                        lease=Lease(job.id, token, job.attempts),
                        job=_info(job, items),
                        sources={i.position: i.source for i in items if i.status == "pending"},
                        reclaimed=reclaimed,
                    )
                )
        return claimed

    async def renew(self, lease: Lease, visibility: float) -> bool:
        """Extend the lease; False if it was lost (another worker took the job over)."""
        async with self.sessions.begin() as s:
            res = await s.execute(
                update(Job)
                .where(
                    Job.id == lease.job_id,
                    Job.lease_token == lease.token,
                    Job.status == "running",
                )
                .values(locked_until=utcnow() + timedelta(seconds=visibility))
            )
        return bool(res.rowcount)  # type: ignore[attr-defined]

    async def _held(self, s: AsyncSession, lease: Lease) -> Job | None:
        return (
            await s.execute(
                self.for_update(
                    select(Job).where(
                        Job.id == lease.job_id,
                        Job.lease_token == lease.token,
                        Job.status == "running",
                    )
                )
            )
        ).scalar_one_or_none()

    # -- results -------------------------------------------------------------------------

    async def record_item(
        self,
        lease: Lease,
        position: int,
        *,
        status: str,
        asset: AssetInfo | None = None,
        error: dict[str, Any] | None = None,
        event: tuple[str, dict[str, Any]] | None = None,
    ) -> bool:
        """Record one item's outcome (and its event) if the lease is still held."""
        async with self.sessions.begin() as s:
            job = await self._held(s, lease)
            if job is None:
                return False
            item = await s.get(JobItem, (lease.job_id, position))
            if item is None:
                raise NotFound("no such job item")
            item.status = status
            item.attempts += 1
            item.error = error
            item.updated_at = utcnow()
            if asset is not None:
                item.size = asset.size
                item.sha256 = asset.sha256
                item.content_type = asset.content_type
                # The bytes are safe now: drop an inline data: URI, keep only its label.
                item.source = item.label
            if event is not None:
                self._event(s, job.id, event[0], event[1])
            await s.flush()
            hooks = hooks_for(job.kind)
            if hooks.on_item is not None:
                await hooks.on_item(s, job, item)
            return True

    async def complete(
        self, lease: Lease, *, last_error: dict[str, Any] | None, fail: dict[int, dict[str, Any]]
    ) -> JobInfo | None:
        """Finish the job: items in ``fail`` end failed with their error, and the status
        follows from the items (completed, partial, failed). None if the lease was lost."""
        async with self.sessions.begin() as s:
            job = await self._held(s, lease)
            if job is None:
                return None
            items = await self._items(s, job.id)
            hooks = hooks_for(job.kind)
            for item in items:
                if item.position in fail and item.status == "pending":
                    item.status = "failed"
                    item.error = fail[item.position]
                    item.attempts += 1
                    item.updated_at = utcnow()
                    await s.flush()
                    if hooks.on_item is not None:
                        await hooks.on_item(s, job, item)
            await self._finish(s, job, items, last_error, fail_pending=True)
            return _info(job, items)

    async def _finish(
        self,
        s: AsyncSession,
        job: Job,
        items: list[JobItem],
        last_error: dict[str, Any] | None,
        *,
        fail_pending: bool,
    ) -> None:
        now = utcnow()
        hooks = hooks_for(job.kind)
        if fail_pending:
            for item in items:
                if item.status == "pending":
                    item.status = "failed"
                    item.error = last_error or {"code": "internal_error", "message": "not done"}
                    item.updated_at = now
                    await s.flush()
                    if hooks.on_item is not None:
                        await hooks.on_item(s, job, item)
        ok = sum(1 for i in items if i.status in ("stored", "deduplicated"))
        failed = sum(1 for i in items if i.status == "failed")
        if failed == 0:
            job.status = "completed"
        elif ok == 0:
            job.status = "failed"
        else:
            job.status = "partial"
        job.last_error = last_error if job.status != "completed" else None
        job.lease_token = None
        job.locked_until = None
        job.finished_at = now
        job.updated_at = now
        if job.callback_url:
            job.callback_status = "pending"
            job.callback_next_at = now
        data: dict[str, Any] = {"status": job.status, "stored": ok, "failed": failed}
        if job.status == "failed":
            data["error"] = last_error
        self._event(s, job.id, "failed" if job.status == "failed" else "done", data)
        await s.flush()
        if hooks.on_finish is not None:
            await hooks.on_finish(s, job, items)

    async def requeue(
        self,
        lease: Lease,
        *,
        run_at: datetime,
        last_error: dict[str, Any] | None,
        refund: bool,
        event: tuple[str, dict[str, Any]] | None,
    ) -> bool:
        """Give the job back to the queue until ``run_at``. ``refund``: this attempt does
        not count (the job was not at fault: shutdown, or waiting for a dead write)."""
        async with self.sessions.begin() as s:
            job = await self._held(s, lease)
            if job is None:
                return False
            job.status = "queued"
            job.run_at = run_at
            job.lease_token = None
            job.locked_until = None
            job.updated_at = utcnow()
            if last_error is not None:
                job.last_error = last_error
            if refund:
                job.attempts = max(0, job.attempts - 1)
            if event is not None:
                self._event(s, job.id, event[0], event[1])
            return True

    # -- what earlier attempts left behind ------------------------------------------------

    async def asset_state(self, asset_id: str) -> AssetState | None:
        async with self.reads() as s:
            row = (
                await s.execute(
                    select(
                        Asset.status,
                        Asset.created_at,
                        StoredObject.id,
                        StoredObject.bucket,
                        StoredObject.key,
                    )
                    .outerjoin(StoredObject, Asset.object_id == StoredObject.id)
                    .where(Asset.id == asset_id)
                )
            ).first()
        if row is None:
            return None
        return AssetState(row[0], aware(row[1]), row[2], row[3], row[4])

    async def drop_leftover(self, asset_id: str, object_id: str | None) -> None:
        """Remove a dead write's pending rows (the caller already deleted its bytes). Only
        that write's: a newer attempt's pending row under the same id is not a leftover."""
        async with self.sessions.begin() as s:
            mine = [Asset.id == asset_id, Asset.status == "pending"]
            if object_id is not None:
                mine.append(Asset.object_id == object_id)
            await s.execute(delete(Asset).where(*mine))
            if object_id is not None:
                await s.execute(
                    delete(StoredObject).where(
                        StoredObject.id == object_id, StoredObject.status == "pending"
                    )
                )

    async def prune_finished(
        self, *, finished_before: datetime, created_before: datetime, limit: int, dry_run: bool
    ) -> int:
        """Remove up to ``limit`` finished jobs with their items and events (``dry_run``:
        count them). A job whose callback is still pending stays until it is delivered or
        given up on."""
        eligible = and_(
            Job.status.in_(TERMINAL),
            Job.finished_at < finished_before,
            Job.created_at < created_before,
            or_(Job.callback_status.is_(None), Job.callback_status != "pending"),
        )
        if dry_run:
            async with self.reads() as s:
                return int(
                    await s.scalar(select(func.count()).select_from(Job).where(eligible)) or 0
                )
        async with self.sessions.begin() as s:
            ids = list((await s.execute(select(Job.id).where(eligible).limit(limit))).scalars())
            if ids:
                # Children first and explicitly: SQLite cascades only with foreign keys on.
                await s.execute(delete(JobEvent).where(JobEvent.job_id.in_(ids)))
                await s.execute(delete(JobItem).where(JobItem.job_id.in_(ids)))
                await s.execute(delete(Job).where(Job.id.in_(ids)))
        return len(ids)

    # -- completion callbacks ------------------------------------------------------------

    async def claim_callbacks(self, *, limit: int, visibility: float) -> list[CallbackClaim]:
        if limit <= 0:
            return []
        now = utcnow()
        out: list[CallbackClaim] = []
        async with self.sessions.begin() as s:
            jobs = list(
                (
                    await s.execute(
                        self.for_update(
                            select(Job)
                            .where(Job.callback_status == "pending", Job.callback_next_at <= now)
                            .order_by(Job.callback_next_at)
                            .limit(limit),
                            skip_locked=True,
                        )
                    )
                ).scalars()
            )
            for job in jobs:
                job.callback_attempts += 1
                # While delivering, the next attempt time doubles as the delivery's lease.
                job.callback_next_at = now + timedelta(seconds=visibility)
                assert job.callback_url is not None
                out.append(CallbackClaim(job.id, job.callback_url, job.callback_attempts))
        return out

    async def callback_done(
        self,
        claim: CallbackClaim,
        *,
        delivered: bool,
        error: str | None,
        retry_at: datetime | None,
    ) -> None:
        async with self.sessions.begin() as s:
            job = (
                await s.execute(
                    self.for_update(
                        select(Job).where(
                            Job.id == claim.job_id,
                            Job.callback_attempts == claim.attempt,
                            Job.callback_status == "pending",
                        )
                    )
                )
            ).scalar_one_or_none()
            if job is None:
                return
            job.callback_last_error = None if delivered else (error or "")[:500]
            if delivered:
                job.callback_status = "delivered"
                job.callback_next_at = None
            elif retry_at is None:
                job.callback_status = "failed"
                job.callback_next_at = None
            else:
                job.callback_next_at = retry_at
            self._event(
                s,
                job.id,
                "callback",
                {
                    "status": job.callback_status,
                    "attempt": claim.attempt,
                    "error": job.callback_last_error,
                },
            )
