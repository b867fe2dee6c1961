"""``submit_ingest``, ``get_job``, ``job_events`` and the worker: the durable-jobs part of
``MediaKeep``.

The job machinery (queue, runner, worker) is imported where it is first used: every
``MediaKeep`` has these methods, most processes never submit or run a job."""

from __future__ import annotations

import base64
import builtins
import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from yarl import URL

from ..db.repo import Repository
from ..errors import InvalidInput, InvalidUrl
from ..pipeline.fetch import Fetcher
from ..pipeline.keys import validate_name
from ..pipeline.store import StorePipeline
from ..settings import Settings
from ..stores.base import ObjectStore
from ..waiting import event_within

if TYPE_CHECKING:
    from .repo import BeforeCommit, Claimed, JobRepository
    from .runner import JobRunner
    from .signals import JobSignals
    from .types import JobEventInfo, JobInfo
    from .worker import JobWorker

MAX_IDEMPOTENCY_KEY = 255


def content_url(base_url: str, asset_id: str) -> str:
    return f"{base_url.rstrip('/')}/v1/assets/{asset_id}/content"


def check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY or not key.isascii() or not key.isprintable():
        raise InvalidInput(
            f"the Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} printable ASCII characters"
        )
    return key


def request_hash(payload: dict[str, Any]) -> str:
    raw = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


class JobsMixin:
    repo: Repository
    settings: Settings
    pipeline: StorePipeline
    store: ObjectStore
    fetcher: Fetcher

    # -- plumbing ------------------------------------------------------------------------

    @property
    def job_repo(self) -> JobRepository:
        found: JobRepository | None = getattr(self, "_job_repo", None)
        if found is None:
            from .repo import JobRepository

            found = JobRepository(
                self.repo.sessions,
                self.repo.engine.dialect.name,
                self.repo.reads,
                signals=self.job_signals,
            )
            self._job_repo = found
        return found

    @property
    def job_signals(self) -> JobSignals:
        """Wakes readers of a job's events when this process commits new ones."""
        found: JobSignals | None = getattr(self, "_job_signals", None)
        if found is None:
            from .signals import JobSignals

            found = JobSignals()
            self._job_signals = found
        return found

    @property
    def job_runner(self) -> JobRunner:
        found: JobRunner | None = getattr(self, "_job_runner", None)
        if found is None:
            from .runner import JobRunner

            found = JobRunner(self, self.job_repo)  # type: ignore[arg-type]
            self._job_runner = found
        return found

    def _job_workers(self) -> set[JobWorker]:
        found: set[JobWorker] | None = getattr(self, "_job_worker_set", None)
        if found is None:
            found = set()
            self._job_worker_set = found
        return found

    def register_job_worker(self, worker: JobWorker) -> None:
        self._job_workers().add(worker)

    def unregister_job_worker(self, worker: JobWorker) -> None:
        self._job_workers().discard(worker)

    def _wake_job_workers(self) -> None:
        for worker in self._job_workers():
            worker.wake()

    def job_worker(self, **kw: Any) -> JobWorker:
        """A worker for this process: ``await keep.job_worker().run()`` until ``stop()``."""
        from .worker import JobWorker

        return JobWorker(self, **kw)  # type: ignore[arg-type]

    def job_payload(self, job: JobInfo) -> dict[str, Any]:
        """A job as the API and callbacks show it: items carry their permanent links."""
        data = job.to_dict()
        base = self.settings.base_url
        for item in data["items"]:
            item["content_url"] = content_url(base, item["asset_id"]) if item["asset_id"] else None
        return data

    # -- submitting ----------------------------------------------------------------------

    def _check_callback(self, url: str | None) -> str | None:
        if url is None:
            return None
        try:
            parsed = URL(url)
        except (ValueError, TypeError) as exc:
            raise InvalidUrl(f"callback_url is not a valid URL: {exc}") from exc
        if len(url) > 2048:
            raise InvalidUrl("callback_url is longer than 2048 characters")
        self.fetcher.policy.check_url(parsed)
        return url

    def _options(
        self,
        *,
        owner: str,
        collection: str | None,
        slot: str | None,
        public: bool,
        provider: str | None,
        metadata: dict[str, Any] | None,
    ) -> dict[str, Any]:
        validate_name(owner, "owner")
        col = self.settings.default_collection if collection is None else collection
        validate_name(col, "collection")
        if slot is not None:
            validate_name(slot, "slot")
        meta = dict(metadata or {})
        try:
            json.dumps(meta, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"metadata must be plain JSON: {exc}") from exc
        return {
            "collection": col,
            "slot": slot,
            "public": public,
            "provider": provider,
            "metadata": meta,
        }

    async def _submit(
        self,
        *,
        kind: str,
        owner: str,
        sources: Sequence[str],
        options: dict[str, Any],
        callback_url: str | None,
        idempotency_key: str | None,
        hash_basis: dict[str, Any] | None = None,
        generation_id: str | None = None,
        before_commit: BeforeCommit | None = None,
        run_now: bool = False,
    ) -> tuple[JobInfo, Claimed | None]:
        from .repo import Claimed, Lease, NewItem
        from .sources import check_source, describe
        from .worker import worker_name

        s = self.settings
        for src in sources:
            check_source(src)
        job_id = str(uuid.uuid4())
        # What makes two submissions "the same request" for an Idempotency-Key; callers
        # whose options hold generated values (ids) say what counts instead.
        basis = hash_basis or {"options": options}
        digest = request_hash(
            {"kind": kind, "sources": list(sources), "callback_url": callback_url, **basis}
        )
        info, lease = await self.job_repo.create(
            job_id=job_id,
            owner=owner,
            kind=kind,
            items=[NewItem(src, describe(src)) for src in sources],
            options=options,
            max_attempts=max(1, s.job_max_attempts),
            callback_url=self._check_callback(callback_url),
            idempotency_key=check_idempotency_key(idempotency_key),
            request_hash=digest,
            idempotency_ttl=s.idempotency_ttl,
            generation_id=generation_id,
            lease_for=worker_name() if run_now else None,
            visibility=s.job_visibility_timeout,
            before_commit=before_commit,
        )
        if lease is None:
            if not info.replayed:
                self._wake_job_workers()
            return info, None
        return info, Claimed(
            lease=Lease(lease.job_id, lease.token, lease.attempt),
            job=info,
            sources=dict(enumerate(sources)),
            reclaimed=False,
        )

    async def _run_now(self, claimed: Claimed) -> JobInfo:
        """Run a job in this call, durably: it is in the database already, leased to us,
        so if this process dies a worker finishes it; retries go to the workers."""
        from .worker import LeaseLost, run_leased

        with contextlib.suppress(LeaseLost):
            await run_leased(
                self.job_runner, self.job_repo, claimed, self.settings.job_visibility_timeout
            )
        self._wake_job_workers()
        return await self.job_repo.get(claimed.lease.job_id)

    async def submit_ingest(
        self,
        sources: Sequence[str | bytes],
        *,
        owner: str,
        collection: str | None = None,
        slot: str | None = None,
        public: bool = False,
        provider: str | None = None,
        metadata: dict[str, Any] | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> JobInfo:
        """Accept URLs (or data: URIs, or bytes) for storing later, durably: when this
        returns, the job is in the database and any worker will finish it."""
        if not sources:
            raise InvalidInput("a job needs at least one source")
        texts = [_as_text(src) for src in sources]
        options = self._options(
            owner=owner,
            collection=collection,
            slot=slot,
            public=public,
            provider=provider,
            metadata=metadata,
        )
        info, _ = await self._submit(
            kind="ingest",
            owner=owner,
            sources=texts,
            options=options,
            callback_url=callback_url,
            idempotency_key=idempotency_key,
        )
        return info

    # -- reading -------------------------------------------------------------------------

    async def get_job(self, job_id: str, *, owner: str | None = None) -> JobInfo:
        return await self.job_repo.get(job_id, owner)

    async def list_jobs(
        self, *, owner: str, status: str | None = None, limit: int = 50
    ) -> builtins.list[JobInfo]:
        return await self.job_repo.list_for(owner, status=status, limit=limit)

    async def job_events(
        self, job_id: str, *, owner: str | None = None, after: int = 0, limit: int = 500
    ) -> builtins.list[JobEventInfo]:
        if owner is not None:
            await self.job_repo.get(job_id, owner)  # another owner's job does not exist
        return await self.job_repo.events(job_id, after=after, limit=limit)

    async def wait_for_job(
        self,
        job_id: str,
        *,
        owner: str | None = None,
        wait: float = 60.0,
        poll: float = 0.1,
    ) -> JobInfo:
        """Wait until the job is completed, partial or failed (TimeoutError after
        ``wait`` seconds). A job run by this process wakes the wait when it finishes; one
        run elsewhere is seen by reading its status every ``poll`` seconds."""
        deadline = time.monotonic() + wait
        while True:
            with self.job_signals.watch(job_id) as changed:
                job = await self.job_repo.get(job_id, owner)
                if job.terminal:
                    return job
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"job {job_id} is still {job.status}")
                await event_within(changed, min(poll, left))


def _as_text(src: str | bytes) -> str:
    if isinstance(src, bytes | bytearray):
        # Inline bytes travel in the job as a data: URI, so the job holds everything.
        return "data:application/octet-stream;base64," + base64.b64encode(src).decode()
    if not isinstance(src, str):
        raise InvalidInput(f"a job source must be a URL or bytes, not {type(src).__name__}")
    return src
