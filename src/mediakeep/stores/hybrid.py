"""Local first, cloud behind: every write lands in the local store at once and is copied to
a remote store (S3, Supabase) in the background; reads are served locally when the bytes
are here, else fetched from the remote into the local store, which then acts as a cache.

What still has to reach the remote is kept in a journal of small files next to the
objects, so a crash, a restart or a remote outage loses nothing: the journal is drained
whenever the remote answers. One file per key: a write records ``.hybrid/intent/…``
before it touches the local store and moves it to ``.hybrid/put/…`` (copy up) once the
file is in place, so the replicator never sees an entry whose bytes are still coming;
``.hybrid/delete/…`` removes from the remote, and hides the remote copy from reads until
done. Local files without a ``put`` entry exist on the remote too, so they may be
evicted; eviction checks the remote first anyway, because files from before hybrid was
turned on never had an entry.

This is a ``LocalStore`` to the rest of the program: its URLs point at this service,
which serves the files through ``get``/``head`` here, fetching from the remote on a miss.
Hybrid assumes one host (or one shared file system) for the local side.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import json
import logging
import mimetypes
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from ..errors import MediaKeepError, NotFound, ObjectExists, StoreError
from ..signing import UrlSigner
from ..waiting import event_within
from .base import Body, ByteRange, ObjectInfo, ObjectStore
from .local import LocalStore

log = logging.getLogger("mediakeep.hybrid")

JOURNAL = ".hybrid"
# Presigned uploads' staging objects are temporary: never worth a round trip to the cloud.
LOCAL_ONLY_PREFIXES = ("_staging/",)
_FILE_CHUNK = 1024 * 1024
# Other processes (the CLI, a second worker) add to the journal too: look again this often
# even when nothing here said there is work.
IDLE_POLL = 15.0
_BATCH = 256
# A write's journal entry stays an intent until its file is in place; an intent this old
# whose file never came belongs to a writer that died.
INTENT_MAX_AGE = 3600.0
T = TypeVar("T")
DEFAULT_CACHE_CONTROL = "private, max-age=31536000, immutable"
# What a remote that is down or unreachable raises (stores wrap most, not all, of it).
_REMOTE_DOWN = (StoreError, aiohttp.ClientError, OSError, TimeoutError)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, MediaKeepError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"[:300]


@dataclass
class ReplicationStatus:
    remote: str  # the remote store's name, or "none" in local-only mode
    pending_puts: int
    pending_bytes: int
    pending_deletes: int
    conflicts: int
    oldest_queued_at: datetime | None
    last_error: str | None = None

    @property
    def backlog(self) -> int:
        return self.pending_puts + self.pending_deletes

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["backlog"] = self.backlog
        d["oldest_queued_at"] = self.oldest_queued_at.isoformat() if self.oldest_queued_at else None
        return d


@dataclass
class ReplicationRound:
    uploaded: int = 0
    uploaded_bytes: int = 0
    deleted: int = 0
    dropped: int = 0  # entries whose local object was gone: nothing to copy
    conflicts: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class CacheReport:
    evicted: int = 0
    evicted_bytes: int = 0
    adopted: int = 0  # local files the remote lacked, queued for replication instead
    local_bytes: int = 0  # what the local store holds afterwards
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _entry_name(bucket: str, key: str) -> str:
    return hashlib.sha256(f"{bucket}\n{key}".encode()).hexdigest() + ".json"


class HybridStore(LocalStore):
    name = "hybrid"

    def __init__(
        self,
        root: Path,
        base_url: str,
        signer: UrlSigner,
        remote: ObjectStore | None,
        *,
        cache_max_bytes: int = 0,
        cache_ttl: float = 0,
        concurrency: int = 4,
        retry_max: float = 60.0,
        background: bool = True,
    ) -> None:
        super().__init__(root, base_url, signer)
        self.remote = remote
        self.cache_max_bytes = cache_max_bytes
        self.cache_ttl = cache_ttl
        self.concurrency = max(1, concurrency)
        self.retry_max = retry_max
        self.background = background
        journal = self.root / JOURNAL
        self._intents = journal / "intent"
        self._puts = journal / "put"
        self._deletes = journal / "delete"
        self._conflicts = journal / "conflict"
        self._buckets: list[str] = []
        self._remote_ready = False
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._drain_lock: asyncio.Lock | None = None
        self.last_error: str | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, buckets: Sequence[str]) -> None:
        await super().start(buckets)
        for d in (self._intents, self._puts, self._deletes, self._conflicts):
            await asyncio.to_thread(d.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(self._recover_intents)
        self._buckets = list(dict.fromkeys([*self._buckets, *buckets]))
        self._remote_ready = False  # buckets to prepare on the remote: the replicator does
        # Not here: start-up (and so every write) must not wait for a remote that is down.
        if (
            self.remote is not None
            and self.background
            and (self._task is None or self._task.done())
        ):
            self._wake = asyncio.Event()
            self._task = asyncio.create_task(self._replicate_forever(), name="hybrid-replicate")

    async def _ensure_remote(self) -> bool:
        assert self.remote is not None
        if self._remote_ready:
            return True
        try:
            await self.remote.start(self._buckets)
        except _REMOTE_DOWN as exc:
            # Writes must not depend on the remote: replication retries this later.
            self.last_error = _describe(exc)
            log.warning("remote store not ready: %s", self.last_error)
            return False
        self._remote_ready = True
        return True

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.remote is not None:
            await self.remote.close()
            self._remote_ready = False

    # -- the journal ----------------------------------------------------------------------

    def _local_only(self, key: str) -> bool:
        return key.startswith(LOCAL_ONLY_PREFIXES)

    @staticmethod
    def _write_entry(path: Path, entry: dict[str, Any]) -> None:
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        tmp.write_text(json.dumps(entry))
        os.replace(tmp, path)  # atomic: readers see the old entry or the new one

    @staticmethod
    def _read_entry(path: Path) -> dict[str, Any] | None:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            data = None
        if not (
            isinstance(data, dict)
            and isinstance(data.get("bucket"), str)
            and isinstance(data.get("key"), str)
        ):
            # Only a damaged file gets here (entries are replaced atomically): dropping it
            # beats blocking the journal, and eviction re-queues whatever the remote lacks.
            log.warning("unreadable journal entry %s", path.name)
            return None
        return data

    async def _queue_put(
        self, bucket: str, key: str, content_type: str, cache: str, *, intent: bool = False
    ) -> None:
        entry = {
            "bucket": bucket,
            "key": key,
            "content_type": content_type,
            "cache_control": cache,
            "queued_at": time.time(),
        }
        folder = self._intents if intent else self._puts
        await asyncio.to_thread(self._write_entry, folder / _entry_name(bucket, key), entry)

    def _promote(self, name: str) -> bool:
        """Move a write's entry from ``intent`` to ``put`` once its bytes are in place:
        the replicator must never see an entry before its file (it would drop it)."""
        try:
            os.replace(self._intents / name, self._puts / name)
        except FileNotFoundError:
            return False  # promoted already (by recovery, or a concurrent writer)
        return True

    def _recover_intents(self, max_age: float = INTENT_MAX_AGE) -> None:
        """Entries of writes that died between their local write and its promotion:
        promote those whose file is there, forget those whose file never came."""
        now = time.time()
        for name in _entries(self._intents):
            path = self._intents / name
            entry = self._read_entry(path)
            if entry is None:
                path.unlink(missing_ok=True)
                continue
            with contextlib.suppress(NotFound):
                if self.path_for(entry["bucket"], entry["key"]).exists():
                    self._promote(name)
                    continue
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < now - max_age:
                    path.unlink()  # a write still in flight would have touched it sooner

    async def _queued_write(
        self, bucket: str, key: str, content_type: str, cache: str, write: Awaitable[T]
    ) -> T:
        """Run a local write with its journal entry: recorded before (so a crash after the
        write still replicates it), visible to the replicator only after."""
        name = _entry_name(bucket, key)
        try:
            await self._queue_put(bucket, key, content_type, cache, intent=True)
        except BaseException:
            if inspect.iscoroutine(write):
                write.close()  # never started: nothing was written
            raise
        try:
            result = await write
        except BaseException:
            if not self.path_for(bucket, key).exists():
                (self._intents / name).unlink(missing_ok=True)
            raise
        if not await asyncio.to_thread(self._promote, name):
            await self._queue_put(bucket, key, content_type, cache)
        self._kick()
        return result

    def _deleted(self, bucket: str, key: str) -> bool:
        return (self._deletes / _entry_name(bucket, key)).exists()

    def _kick(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # -- the store ------------------------------------------------------------------------

    async def put(
        self, bucket: str, key: str, body: Body, *, content_type: str, cache_control: str
    ) -> ObjectInfo:
        if self._local_only(key):
            return await super().put(
                bucket, key, body, content_type=content_type, cache_control=cache_control
            )
        path = self.path_for(bucket, key)
        if await asyncio.to_thread(path.exists):
            raise ObjectExists(f"object {bucket}/{key} already exists")
        return await self._queued_write(
            bucket,
            key,
            content_type,
            cache_control,
            super().put(bucket, key, body, content_type=content_type, cache_control=cache_control),
        )

    async def get(
        self, bucket: str, key: str, byte_range: ByteRange | None = None
    ) -> AsyncIterator[bytes]:
        path = self.path_for(bucket, key)
        if await asyncio.to_thread(self._touch, path):
            started = False
            try:
                async for chunk in super().get(bucket, key, byte_range):
                    started = True
                    yield chunk
                return
            except NotFound:
                if started:
                    raise
                # Evicted between the check and the read: fetch it like any miss.
        if self.remote is None or self._local_only(key) or self._deleted(bucket, key):
            raise NotFound("no such object")
        if byte_range is not None:
            await self._fill(bucket, key)
            async for chunk in super().get(bucket, key, byte_range):
                yield chunk
            return
        async for chunk in self._fetch(bucket, key):
            yield chunk

    @staticmethod
    def _touch(path: Path) -> bool:
        """Record a read for LRU eviction (atime; mtime stays the arrival time)."""
        try:
            st = path.stat()
            os.utime(path, ns=(time.time_ns(), st.st_mtime_ns))
        except FileNotFoundError:
            return False
        return True

    async def _fetch(self, bucket: str, key: str) -> AsyncIterator[bytes]:
        """Stream from the remote while keeping a copy; published only when complete."""
        assert self.remote is not None
        tmp = self._tmp / f"{uuid.uuid4().hex}.part"
        fh = await asyncio.to_thread(tmp.open, "wb")
        try:
            async for chunk in self.remote.get(bucket, key):
                await asyncio.to_thread(fh.write, chunk)
                yield chunk
            await asyncio.to_thread(fh.close)
            await asyncio.to_thread(self._publish_cached, tmp, self.path_for(bucket, key))
        finally:
            fh.close()
            tmp.unlink(missing_ok=True)

    async def _fill(self, bucket: str, key: str) -> None:
        async for _ in self._fetch(bucket, key):
            pass

    def _publish_cached(self, tmp: Path, dest: Path) -> None:
        # FileExistsError: a concurrent reader cached it first, the same bytes.
        with contextlib.suppress(FileExistsError):
            self._publish(tmp, dest)

    async def head(self, bucket: str, key: str) -> ObjectInfo | None:
        info = await super().head(bucket, key)
        if info is not None:
            return info
        if self.remote is None or self._local_only(key) or self._deleted(bucket, key):
            return None
        remote = await self.remote.head(bucket, key)
        if remote is None:
            return None
        # The remote's etag names other bytes than ours would: keep only what is shared.
        return ObjectInfo(key=key, size=remote.size, last_modified=remote.last_modified)

    async def delete(self, bucket: str, key: str) -> None:
        if self._local_only(key):
            await super().delete(bucket, key)
            return
        name = _entry_name(bucket, key)
        # Also in local-only mode: the remote may hold a copy from before.
        entry = {"bucket": bucket, "key": key, "queued_at": time.time()}
        await asyncio.to_thread(self._write_entry, self._deletes / name, entry)
        await super().delete(bucket, key)
        await asyncio.to_thread((self._puts / name).unlink, True)
        self._kick()

    async def list_objects(self, bucket: str, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        local: dict[str, ObjectInfo] = {}
        async for info in super().list_objects(bucket, prefix):
            local[info.key] = info
        if self.remote is not None:
            deleted = set(await asyncio.to_thread(os.listdir, self._deletes))
            async for info in self.remote.list_objects(bucket, prefix):
                if info.key in local or _entry_name(bucket, info.key) in deleted:
                    continue
                yield ObjectInfo(key=info.key, size=info.size, last_modified=info.last_modified)
        for info in local.values():
            yield info

    async def copy(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        *,
        cache_control: str | None = None,
    ) -> None:
        src = self.path_for(src_bucket, src_key)
        if not await asyncio.to_thread(src.exists):
            if self.remote is None or self._deleted(src_bucket, src_key):
                raise NotFound("no such object")
            await self._fill(src_bucket, src_key)
        if await asyncio.to_thread(self.path_for(dst_bucket, dst_key).exists):
            return
        source = await asyncio.to_thread(
            self._read_entry, self._puts / _entry_name(src_bucket, src_key)
        )
        content_type = (source or {}).get("content_type") or guess_type(src_key)
        cache = cache_control or (source or {}).get("cache_control") or DEFAULT_CACHE_CONTROL
        await self._queued_write(
            dst_bucket,
            dst_key,
            str(content_type),
            str(cache),
            super().copy(src_bucket, src_key, dst_bucket, dst_key),
        )

    # -- replication ----------------------------------------------------------------------

    async def _replicate_forever(self) -> None:
        assert self._wake is not None
        delay = 0.0
        while True:
            try:
                done = await self.replicate()
            except Exception as exc:  # keep replicating whatever went wrong once
                log.exception("replication round failed")
                done = ReplicationRound(errors=[f"{type(exc).__name__}: {exc}"])
            if done.errors:
                # Back off whatever the writers say: each write must not become a retry.
                delay = min(self.retry_max, max(0.5, delay * 2))
                await asyncio.sleep(delay)
                self._wake.clear()
                continue
            delay = 0.0
            await event_within(self._wake, IDLE_POLL)
            self._wake.clear()

    async def replicate(self) -> ReplicationRound:
        """Drain the journal once: removals first (so a key deleted and written again ends
        up as the new bytes), then copies. Stops at the first sign the remote is down."""
        report = ReplicationRound()
        if self.remote is None:
            return report
        if self._drain_lock is None:
            self._drain_lock = asyncio.Lock()
        async with self._drain_lock:
            await asyncio.to_thread(self._recover_intents)
            if not await self._ensure_remote():
                report.errors.append(self.last_error or "remote store not ready")
                return report
            try:
                await self._drain(self._deletes, self._replicate_delete, report)
                await self._drain(self._puts, self._replicate_put, report)
            except _REMOTE_DOWN as exc:
                self.last_error = _describe(exc)
                report.errors.append(self.last_error)
                log.warning("replication paused: %s", self.last_error)
                return report
        if not report.errors:
            self.last_error = None
        return report

    async def _drain(
        self,
        folder: Path,
        work: Callable[[str, ReplicationRound], Awaitable[None]],
        report: ReplicationRound,
    ) -> None:
        sem = asyncio.Semaphore(self.concurrency)

        async def one(name: str) -> None:
            async with sem:
                await work(name, report)

        while True:
            names = await asyncio.to_thread(_entries, folder, _BATCH)
            if not names:
                return
            before = len(names)
            results = await asyncio.gather(*(one(n) for n in names), return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException):
                    raise r
            left = await asyncio.to_thread(_entries, folder, _BATCH)
            if set(left) >= set(names) and len(left) >= before:
                return  # nothing moved (conflicts parked elsewhere still leave here)

    async def _replicate_delete(self, name: str, report: ReplicationRound) -> None:
        assert self.remote is not None
        path = self._deletes / name
        entry = await asyncio.to_thread(self._read_entry, path)
        if entry is None:
            await asyncio.to_thread(path.unlink, True)
            return
        await self.remote.delete(entry["bucket"], entry["key"])
        await asyncio.to_thread(path.unlink, True)
        report.deleted += 1

    async def _replicate_put(self, name: str, report: ReplicationRound) -> None:
        assert self.remote is not None
        path = self._puts / name
        entry = await asyncio.to_thread(self._read_entry, path)
        if entry is None:
            await asyncio.to_thread(path.unlink, True)
            return
        bucket, key = entry["bucket"], entry["key"]
        if self._deleted(bucket, key):
            return  # the removal goes first; the next round copies the new bytes
        local = self.path_for(bucket, key)
        try:
            size = (await asyncio.to_thread(local.stat)).st_size
        except FileNotFoundError:
            await asyncio.to_thread(path.unlink, True)
            report.dropped += 1
            return
        try:
            await self.remote.put(
                bucket,
                key,
                self._read_file(local),
                content_type=entry.get("content_type") or guess_type(key),
                cache_control=entry.get("cache_control") or DEFAULT_CACHE_CONTROL,
            )
        except ObjectExists:
            pass  # an earlier attempt got there (we crashed before clearing the entry)
        except NotFound:
            await asyncio.to_thread(path.unlink, True)  # deleted locally meanwhile
            report.dropped += 1
            return
        there = await self.remote.head(bucket, key)
        if there is None or there.size != size:
            got = None if there is None else there.size
            log.error("replica of %s/%s holds %s bytes, not %s", bucket, key, got, size)
            await asyncio.to_thread(os.replace, path, self._conflicts / name)
            report.conflicts += 1
            return
        # Deleted while we copied? Its removal entry is still queued and takes the copy
        # back next round. (The local file is no sign: eviction removes it too.)
        await asyncio.to_thread(path.unlink, True)
        report.uploaded += 1
        report.uploaded_bytes += size

    @staticmethod
    async def _read_file(path: Path) -> AsyncIterator[bytes]:
        fh = await asyncio.to_thread(path.open, "rb")
        try:
            while chunk := await asyncio.to_thread(fh.read, _FILE_CHUNK):
                yield chunk
        finally:
            fh.close()

    async def flush(self, within: float | None = None) -> ReplicationStatus:
        """Replicate until the journal is empty (or ``within`` seconds pass); returns
        what is left."""
        deadline = None if within is None else time.monotonic() + within
        while True:
            done = await self.replicate()
            status = await self.status()
            if status.backlog == 0 or (deadline is not None and time.monotonic() >= deadline):
                return status
            if done.errors or not (done.uploaded or done.deleted or done.dropped):
                await asyncio.sleep(0.2)  # waiting on the remote, or on another process

    async def status(self) -> ReplicationStatus:
        def scan() -> ReplicationStatus:
            puts = _entries(self._puts)
            deletes = _entries(self._deletes)
            pending_bytes = 0
            oldest: float | None = None
            for name in puts:
                entry = self._read_entry(self._puts / name)
                if entry is None:
                    continue
                queued = float(entry.get("queued_at") or 0)
                oldest = queued if oldest is None else min(oldest, queued)
                with contextlib.suppress(OSError, NotFound):
                    pending_bytes += self.path_for(entry["bucket"], entry["key"]).stat().st_size
            for name in deletes:
                entry = self._read_entry(self._deletes / name)
                if entry is not None:
                    queued = float(entry.get("queued_at") or 0)
                    oldest = queued if oldest is None else min(oldest, queued)
            return ReplicationStatus(
                remote=self.remote.name if self.remote is not None else "none",
                pending_puts=len(puts),
                pending_bytes=pending_bytes,
                pending_deletes=len(deletes),
                conflicts=len(_entries(self._conflicts)),
                oldest_queued_at=datetime.fromtimestamp(oldest, UTC) if oldest else None,
                last_error=self.last_error,
            )

        return await asyncio.to_thread(scan)

    # -- the cache ------------------------------------------------------------------------

    async def clean_cache(self, now: float | None = None) -> CacheReport:
        """Evict local copies of replicated objects: unused for the TTL, then least
        recently used first until under the size cap. Never an object that waits for
        replication, and never one the remote does not hold (that one is queued)."""
        report = CacheReport()
        if self.remote is None:
            report.local_bytes = sum(f.size for f in await asyncio.to_thread(self._local_files))
            return report  # local-only mode: these are the only copies
        files = await asyncio.to_thread(self._local_files)
        pending = set(await asyncio.to_thread(_entries, self._puts))
        pending |= set(await asyncio.to_thread(_entries, self._conflicts))
        total = sum(f.size for f in files)
        now = time.time() if now is None else now
        victims: list[_LocalFile] = []
        over = total - self.cache_max_bytes if self.cache_max_bytes > 0 else 0
        for f in sorted(files, key=lambda f: f.atime):
            if _entry_name(f.bucket, f.key) in pending:
                continue
            expired = self.cache_ttl > 0 and f.atime < now - self.cache_ttl
            if expired or over > 0:
                victims.append(f)
                over -= f.size
        for f in victims:
            try:
                there = await self.remote.head(f.bucket, f.key)
            except StoreError as exc:
                report.errors.append(exc.message)
                break
            if there is None:
                # Never replicated (written before hybrid was on, or its entry was lost).
                await self._queue_put(f.bucket, f.key, guess_type(f.key), DEFAULT_CACHE_CONTROL)
                report.adopted += 1
                continue
            if there.size != f.size:
                report.errors.append(f"{f.bucket}/{f.key}: the remote holds other bytes")
                continue
            await asyncio.to_thread(self._evict, f)
            report.evicted += 1
            report.evicted_bytes += f.size
            total -= f.size
        if report.adopted:
            self._kick()
        report.local_bytes = total
        return report

    def _local_files(self) -> list[_LocalFile]:
        out: list[_LocalFile] = []
        for bucket_dir in self.root.iterdir():
            if not bucket_dir.is_dir() or bucket_dir.name.startswith("."):
                continue
            for dirpath, _dirs, files in os.walk(bucket_dir):
                for name in files:
                    p = Path(dirpath) / name
                    key = p.relative_to(bucket_dir).as_posix()
                    if self._local_only(key):
                        continue
                    try:
                        st = p.stat()
                    except FileNotFoundError:
                        continue
                    out.append(_LocalFile(bucket_dir.name, key, p, st.st_size, st.st_atime))
        return out

    def _evict(self, f: _LocalFile) -> None:
        f.path.unlink(missing_ok=True)
        # Drop emptied folders up to the bucket, so the tree does not fill with husks.
        bucket_dir = self.root / f.bucket
        parent = f.path.parent
        while parent != bucket_dir and parent.is_relative_to(bucket_dir):
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent


@dataclass
class _LocalFile:
    bucket: str
    key: str
    path: Path
    size: int
    atime: float


def _entries(folder: Path, limit: int | None = None) -> list[str]:
    try:
        names = [n for n in os.listdir(folder) if n.endswith(".json") and not n.startswith(".")]
    except FileNotFoundError:
        return []
    return names[:limit] if limit is not None else names


def guess_type(key: str) -> str:
    # Keys end in the extension of their sniffed type (see pipeline/keys.py).
    return mimetypes.guess_type(key)[0] or "application/octet-stream"
