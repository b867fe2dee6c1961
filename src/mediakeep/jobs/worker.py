"""The job worker: claims due jobs, runs them under renewed leases, delivers completion
callbacks, and stops claiming while the object store is unreachable (so an outage does
not use up the jobs' attempts: they wait in the queue instead)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..db.models import utcnow
from ..errors import MediaKeepError
from ..waiting import event_within
from .callbacks import CallbackFailed, CallbackSender
from .repo import CallbackClaim, Claimed, JobRepository, Lease
from .runner import JobRunner, RunResult, retry_delay

if TYPE_CHECKING:
    from ..keep import MediaKeep

log = logging.getLogger("mediakeep.jobs")
PROBE_KEY = ".mediakeep-ping"
# How often a worker offers to run scheduled maintenance (gc, cache clean-up); the
# maintenance itself decides whether anything is due, and runs in one process at a time.
MAINTENANCE_EVERY = 60.0


class LeaseLost(Exception):
    """Another worker took the job over; this one must not write anything more about it."""


@dataclass
class WorkerStats:
    worker: str
    jobs: int = 0
    completed: int = 0
    partial: int = 0
    failed: int = 0
    retried: int = 0
    lost: int = 0
    released: int = 0
    callbacks_delivered: int = 0
    callbacks_failed: int = 0
    store_outages: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


async def run_leased(
    runner: JobRunner, repo: JobRepository, claimed: Claimed, visibility: float
) -> RunResult:
    """Run a claimed job while renewing its lease. If the lease is lost, or cannot be
    renewed before it would run out, the work is cancelled: after that point another
    worker may own the job, and two must never write it at once."""
    work = asyncio.create_task(runner.run(claimed))
    finished = asyncio.Event()
    work.add_done_callback(lambda _: finished.set())
    lost = False

    async def renew() -> None:
        nonlocal lost
        interval = max(0.05, visibility / 4)
        last_ok = time.monotonic()
        while not await event_within(finished, interval):
            try:
                held: bool | None = await repo.renew(claimed.lease, visibility)
            except Exception:
                log.warning("could not renew a job lease", exc_info=True)
                held = None
            if held:
                last_ok = time.monotonic()
            elif held is False or time.monotonic() - last_ok > visibility * 0.6:
                lost = True
                work.cancel()
                return

    keeper = asyncio.create_task(renew())
    try:
        return await work
    except asyncio.CancelledError:
        if lost:
            raise LeaseLost(claimed.lease.job_id) from None
        raise
    finally:
        # Woken by the work's end rather than cancelled, so that a renewal it has begun
        # finishes (see db/engine.py on statements cut off by cancellation).
        if not work.done():
            work.cancel()  # we were cancelled ourselves: the work goes with us
        await asyncio.shield(keeper)


class JobWorker:
    """One worker (a process may run one). ``await worker.run()`` until ``stop()``."""

    def __init__(
        self,
        keep: MediaKeep,
        *,
        concurrency: int | None = None,
        poll_interval: float | None = None,
        name: str | None = None,
    ) -> None:
        s = keep.settings
        self.keep = keep
        self.repo: JobRepository = keep.job_repo
        self.runner: JobRunner = keep.job_runner
        self.name = name or worker_name()
        self.concurrency = max(1, concurrency or s.job_concurrency)
        self.poll_interval = max(0.01, poll_interval or s.job_poll_interval)
        self.visibility = s.job_visibility_timeout
        self.stats = WorkerStats(self.name)
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._store_down_since: float | None = None
        self._maintenance: asyncio.Task[object] | None = None
        self._next_maintenance = time.monotonic() + MAINTENANCE_EVERY
        self.callbacks = CallbackSender(
            keep.fetcher.policy, s.resolved_callback_secret(), s.callback_timeout
        )

    # -- control -------------------------------------------------------------------------

    def wake(self) -> None:
        """Look for work now (a job was just submitted in this process)."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    # -- the loop ------------------------------------------------------------------------

    async def run(
        self, *, drain: bool = False, on_ready: Callable[[JobWorker], None] | None = None
    ) -> WorkerStats:
        """Work until ``stop()`` (or, with ``drain``, until no job waits or runs)."""
        self.keep.register_job_worker(self)
        if on_ready is not None:
            on_ready(self)
        failures = 0
        try:
            while not self._stopping.is_set():
                # Everything that reads the database is inside the try: a database restart
                # must cost the worker a backoff, never its life.
                try:
                    busy = await self._step()
                    if drain and not self._tasks and await self.repo.nothing_left():
                        break
                    wait = 0.0 if busy else await self._idle_wait()
                    failures = 0
                except Exception:
                    failures += 1
                    log.warning("job worker step failed", exc_info=True)
                    await self._sleep(retry_delay(failures, self.poll_interval, 30.0))
                    continue
                if not busy:
                    await self._sleep(wait)
        finally:
            await self._shutdown()
            await self.callbacks.close()
            self.keep.unregister_job_worker(self)
        return self.stats

    async def _step(self) -> bool:
        """Claim what fits; True if there may be more to claim right away."""
        self._offer_maintenance()
        if self._store_down_since is not None and not await self._store_back():
            await self._sleep(self._probe_wait())
            return True
        free = self.concurrency - len(self._tasks)
        if free <= 0:
            return False
        claimed = await self.repo.claim(worker=self.name, limit=free, visibility=self.visibility)
        for c in claimed:
            self._spawn(self._job(c))
        free -= len(claimed)
        calls = await self.repo.claim_callbacks(limit=free, visibility=self.visibility)
        for cb in calls:
            self._spawn(self._callback(cb))
        return free <= 0 and bool(claimed or calls)

    async def _idle_wait(self) -> float:
        wait = self.poll_interval
        due = await self.repo.next_due()
        if due is not None:
            wait = min(wait, max(0.0, (due - utcnow()).total_seconds()))
        return wait

    async def _sleep(self, seconds: float) -> None:
        """Sleep until woken, a job task ends, or ``seconds`` pass."""
        self._wake.clear()
        waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(self._wake.wait())}
        waiters |= set(self._tasks)
        try:
            await asyncio.wait(
                waiters, timeout=max(0.0, seconds), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for w in waiters:
                if w not in self._tasks:
                    w.cancel()

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _offer_maintenance(self) -> None:
        now = time.monotonic()
        if now < self._next_maintenance or (self._maintenance and not self._maintenance.done()):
            return
        self._next_maintenance = now + MAINTENANCE_EVERY
        # Beside the jobs, not in their way: a long gc must not hold up claiming.
        self._maintenance = asyncio.create_task(self._maintain())

    async def _maintain(self) -> None:
        try:
            await self.keep.maintenance_tick()
        except Exception:
            log.warning("scheduled maintenance failed", exc_info=True)

    async def _shutdown(self) -> None:
        """Let running jobs finish for a grace period, then hand the rest back."""
        if self._maintenance is not None and not self._maintenance.done():
            self._maintenance.cancel()
            await asyncio.gather(self._maintenance, return_exceptions=True)
        if not self._tasks:
            return
        grace = self.keep.settings.job_shutdown_grace
        _done, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    # -- jobs ----------------------------------------------------------------------------

    async def _job(self, claimed: Claimed) -> None:
        self.stats.jobs += 1
        try:
            result = await run_leased(self.runner, self.repo, claimed, self.visibility)
        except LeaseLost:
            self.stats.lost += 1
            log.warning("lost the lease of job %s; another worker has it", claimed.lease.job_id)
            return
        except asyncio.CancelledError:
            # Shutting down: hand the job back now rather than after the lease runs out.
            self.stats.released += 1
            await asyncio.shield(self._release(claimed.lease))
            raise
        except Exception:
            log.exception("job %s failed unexpectedly", claimed.lease.job_id)
            return
        self._count(result)
        if result.store_suspect:
            await self._check_store()
        if result.job is not None and result.job.callback is not None:
            self.wake()

    def _count(self, result: RunResult) -> None:
        if result.status == "queued":
            self.stats.retried += 1
        elif result.status == "lost":
            self.stats.lost += 1
        elif result.status in ("completed", "partial", "failed"):
            setattr(self.stats, result.status, getattr(self.stats, result.status) + 1)

    async def _release(self, lease: Lease) -> None:
        try:
            await self.repo.requeue(
                lease,
                run_at=utcnow(),
                last_error=None,
                refund=True,
                event=("released", {"worker": self.name, "reason": "worker stopping"}),
            )
        except Exception:
            log.warning("could not hand job %s back; its lease will run out", lease.job_id)

    # -- the object store's health -------------------------------------------------------

    async def _probe(self) -> bool:
        s = self.keep.settings
        # A store that cannot be connected to within the connect timeout counts as down
        # (its client may retry for minutes before saying so itself).
        try:
            await asyncio.wait_for(
                self.keep.store.head(s.private_bucket, PROBE_KEY), min(5.0, s.connect_timeout)
            )
        except Exception:
            return False
        return True

    async def _check_store(self) -> None:
        if self._store_down_since is None and not await self._probe():
            self._store_down_since = time.monotonic()
            self.stats.store_outages += 1
            log.warning("object store unreachable: pausing job claims until it answers")

    async def _store_back(self) -> bool:
        if await self._probe():
            log.info("object store reachable again: resuming job claims")
            self._store_down_since = None
            return True
        return False

    def _probe_wait(self) -> float:
        s = self.keep.settings
        assert self._store_down_since is not None
        down_for = time.monotonic() - self._store_down_since
        return min(s.job_retry_max_backoff, max(s.job_retry_backoff, down_for / 4))

    # -- callbacks -----------------------------------------------------------------------

    async def _callback(self, claim: CallbackClaim) -> None:
        s = self.keep.settings
        try:
            job = await self.repo.get(claim.job_id)
            event = f"job.{job.status}"
            payload = {"type": event, "job": self.keep.job_payload(job)}
            body = json.dumps(payload, separators=(",", ":"), default=str).encode()
            await self.callbacks.send(
                claim.url, body, event=event, job_id=job.id, attempt=claim.attempt
            )
        except Exception as exc:
            give_up = claim.attempt >= s.callback_max_attempts or not _retryable(exc)
            delay = retry_delay(
                claim.attempt, s.callback_retry_backoff, s.callback_retry_max_backoff
            )
            await self.repo.callback_done(
                claim,
                delivered=False,
                error=exc.message if isinstance(exc, CallbackFailed) else _reason(exc),
                retry_at=None if give_up else utcnow() + timedelta(seconds=delay),
            )
            if give_up:
                self.stats.callbacks_failed += 1
            return
        await self.repo.callback_done(claim, delivered=True, error=None, retry_at=None)
        self.stats.callbacks_delivered += 1


def _retryable(exc: BaseException) -> bool:
    # A URL the policy refuses stays refused; anything else may be a passing failure.
    return not isinstance(exc, MediaKeepError) or exc.retryable


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return str(text)


@contextlib.asynccontextmanager
async def background_worker(keep: MediaKeep, **kw: Any) -> Any:
    """A worker running in this event loop for the duration of the block."""
    worker = JobWorker(keep, **kw)
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.gather(task, return_exceptions=True)
