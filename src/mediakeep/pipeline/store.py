"""The store pipeline: the one code path every way in (URL ingest, upload, migration, ...)
goes through. Stream in, hash and sniff on the way, write once, record, dedup."""

from __future__ import annotations

import asyncio
import io
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from ..db.repo import Finalized, PendingWrite, Repository
from ..errors import (
    DownloadTimeout,
    EmptyFile,
    FileTooLarge,
    IntegrityError,
    MediaKeepError,
    SizeMismatch,
    StoreError,
    UnsupportedMediaType,
)
from ..media.image import ImageReport
from ..media.probe import probe_header
from ..media.strip import MetadataFilter
from ..models import AssetInfo
from ..stores.base import ObjectInfo, ObjectStore, cache_control
from .derived import Derived
from .fetch import Fetcher
from .hashing import StreamHash
from .keys import build_key, validate_name
from .process import MediaProcessor
from .sniff import check_complete, extension_for, media_kind, sniff
from .spool import Spool

log = logging.getLogger("mediakeep.pipeline")

HEAD_BYTES = 64 * 1024
# Bodies up to this size go to the store as one buffer (S3's single-PUT limit): joined
# once, and that one buffer is also what the decode check reads. Streamed past it.
WHOLE_BODY = 8 * 1024 * 1024
SPOOL_IN_MEMORY = 8 * 1024 * 1024
TAIL_BYTES = 1024
ByteProgress = Callable[[int, int | None], None]


@dataclass
class StoreRequest:
    owner: str
    collection: str
    slot: str | None = None
    public: bool = False
    provider: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    allowed_types: tuple[str, ...] | None = None
    # Set when the caller reserved the id already (presigned uploads).
    asset_id: str | None = None
    # What the uploader promised; a mismatch is rejected (presigned uploads).
    expected_type: str | None = None
    expected_size: int | None = None


@dataclass
class PipelineConfig:
    private_bucket: str
    public_bucket: str
    key_template: str
    max_file_size: int
    allowed_types: tuple[str, ...]
    download_timeout: float
    max_retries: int
    max_image_pixels: int
    public_allowed_types: tuple[str, ...] | None = None
    collection_allowed_types: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def allowed_for(self, req: StoreRequest) -> tuple[str, ...]:
        """Most specific wins: the request, then its collection, then its visibility."""
        if req.allowed_types is not None:
            return req.allowed_types
        if req.collection in self.collection_allowed_types:
            return self.collection_allowed_types[req.collection]
        if req.public and self.public_allowed_types is not None:
            return self.public_allowed_types
        return self.allowed_types


@dataclass
class Stored:
    asset: AssetInfo
    deduplicated: bool


class StorePipeline:
    def __init__(
        self,
        config: PipelineConfig,
        store: ObjectStore,
        repo: Repository,
        fetcher: Fetcher,
        media: MediaProcessor,
    ) -> None:
        self.config = config
        self.store = store
        self.repo = repo
        self.fetcher = fetcher
        self.media = media
        self.derived = Derived(store, repo, media, config.public_bucket)

    async def run(
        self,
        source: Any,
        req: StoreRequest,
        on_bytes: ByteProgress | None = None,
        on_transferred: Callable[[], None] | None = None,
    ) -> Stored:
        """Store one source. Raises a MediaKeepError; on failure nothing is left behind.

        ``on_transferred`` is called once the bytes are in the store and checked, before
        the record is finalized: a caller bounding concurrent transfers can start the next
        one then, since what is left holds no buffers."""
        validate_name(req.owner, "owner")
        validate_name(req.collection, "collection")
        if req.slot is not None:
            validate_name(req.slot, "slot")
        attempt = 0
        while True:
            try:
                async with asyncio.timeout(self.config.download_timeout):
                    return await self._attempt(source, req, on_bytes, on_transferred)
            except TimeoutError as exc:
                raise DownloadTimeout(
                    f"the transfer did not finish within {self.config.download_timeout:g} s"
                ) from exc
            except MediaKeepError as exc:
                # Only transfers cut short mid-body get here as retryable; failures to
                # connect were already retried by the fetcher.
                if not (exc.retryable and source.reopenable and attempt < self.config.max_retries):
                    raise
                attempt += 1
                log.info("retrying transfer", extra={"category": "download", "attempt": attempt})

    async def _attempt(
        self,
        source: Any,
        req: StoreRequest,
        on_bytes: ByteProgress | None,
        on_transferred: Callable[[], None] | None,
    ) -> Stored:
        cfg = self.config
        opened = await source.open(self.fetcher)
        pending: PendingWrite | None = None
        uploaded = False
        try:
            declared = opened.declared_length
            if declared is not None and declared > cfg.max_file_size:
                raise FileTooLarge(
                    f"the source is {declared} bytes; the limit is {cfg.max_file_size}"
                )
            head, eof = await _read_head(opened.chunks, HEAD_BYTES)
            if not head:
                raise EmptyFile("the source is empty")
            content_type = sniff(head)
            if content_type not in cfg.allowed_for(req):
                raise UnsupportedMediaType(
                    f"the content is {content_type}, which is not allowed here",
                    content_type=content_type,
                )
            if req.expected_type is not None and content_type != req.expected_type:
                raise UnsupportedMediaType(
                    f"the content is {content_type}, not the promised {req.expected_type}",
                    content_type=content_type,
                )
            if req.expected_size is not None:
                if declared is None:
                    declared = req.expected_size
                elif declared != req.expected_size:
                    raise SizeMismatch(
                        f"the upload is {declared} bytes, not the promised {req.expected_size}"
                    )
            header = probe_header(head, content_type, cfg.max_image_pixels)
            kind = media_kind(content_type)
            asset_id = req.asset_id or str(uuid.uuid4())
            bucket = cfg.public_bucket if req.public else cfg.private_bucket
            key = build_key(
                cfg.key_template,
                owner=req.owner,
                collection=req.collection,
                slot=req.slot,
                asset_id=_key_id(asset_id, reserved=req.asset_id is not None),
                ext=extension_for(content_type),
                kind=kind,
            )
            meter = _Meter(head, opened.chunks, eof, cfg.max_file_size, declared, on_bytes)
            flt = self.media.metadata_filter(content_type, req.collection)
            spool = Spool(SPOOL_IN_MEMORY) if self.media.wants_image_check(content_type) else None
            out = _Digest(meter.body(), flt, spool)
            check: asyncio.Future[ImageReport] | None = None
            whole = b""
            # The intent is recorded while the body downloads; the upload waits for it.
            begin = asyncio.ensure_future(
                self.repo.begin_write(
                    owner=req.owner,
                    collection=req.collection,
                    slot=req.slot,
                    public=req.public,
                    bucket=bucket,
                    key=key,
                    content_type=content_type,
                    media_kind=kind,
                    source_url=opened.source_url,
                    provider=req.provider,
                    metadata=req.metadata,
                    asset_id=asset_id,
                    width=header.width,
                    height=header.height,
                )
            )
            try:
                try:
                    body = await _whole_if_small(out.stream(), WHOLE_BODY)
                except BaseException:
                    # Nothing was uploaded, but the pending rows may be written: undo them.
                    pending = await _settled(begin)
                    raise
                pending = await begin
                if isinstance(body, bytes) and spool is not None:
                    # The whole body is here: check it while it uploads, not after. The
                    # check reads this one buffer, so the spool's chunks can go now.
                    spool.close()
                    whole = body
                    check = asyncio.ensure_future(
                        self.media.analyse_image(lambda: io.BytesIO(whole), content_type)
                    )
                try:
                    info = await self.store.put(
                        bucket,
                        key,
                        body,
                        content_type=content_type,
                        cache_control=cache_control(req.public),
                    )
                except BaseException:
                    uploaded = True  # a partial object may exist: remove it
                    if meter.error is not None:
                        raise meter.error from None
                    if out.error is not None:
                        raise out.error from None
                    raise
                uploaded = True
                if meter.error is not None:
                    raise meter.error
                if declared is not None and meter.size != declared:
                    raise SizeMismatch(
                        f"the server announced {declared} bytes but sent {meter.size}"
                    )
                problem = check_complete(content_type, meter.tail, meter.size)
                if problem:
                    raise UnsupportedMediaType(problem, content_type=content_type)
                await self._verify(bucket, key, out.size, info)
                image = None
                if check is not None:
                    image = await check
                elif spool is not None:
                    image = await self.media.analyse_image(spool.reader, content_type)
            finally:
                if check is not None:
                    _abandon(check)
                if spool is not None:
                    spool.close()
            media_info: dict[str, Any] = {}
            if image is not None:
                media_info = {
                    "format": image.format,
                    "frames": image.frames,
                    "mode": image.mode,
                    "placeholder": image.placeholder,
                }
            if flt is not None:
                media_info["metadata_removed"] = flt.removed
            # The transfer is over: its buffers go now, not when this call returns (the
            # spool was closed and the check's closure reads ``whole``).
            body = whole = b""
            derived_work = bool(image and image.variants) or self.media.wants_av_probe(content_type)
            if on_transferred is not None and not derived_work:
                # (Variants are uploaded, and a video probed, after the record: those stay
                # inside the caller's bound.)
                on_transferred()
            done: Finalized = await self.repo.finalize(
                pending,
                sha256=await out.sha256.hexdigest(),
                size=out.size,
                media_info=media_info or None,
                width=image.width if image else None,
                height=image.height if image else None,
            )
            if done.discard_key is not None:
                await self._discard(pending.bucket, done.discard_key, pending.object_id)
            elif image is not None and image.variants:
                await self.derived.save_images(done.object_id, bucket, key, image.variants)
            if not done.deduplicated and self.media.wants_av_probe(content_type):
                done = await self.derived.probe_av(done, content_type)
            return Stored(done.asset, done.deduplicated)
        except BaseException:
            if pending is not None:
                await asyncio.shield(self._rollback(pending, uploaded))
            raise
        finally:
            opened.close()

    async def _verify(self, bucket: str, key: str, expected: int, info: ObjectInfo) -> None:
        if info.size != expected:
            raise IntegrityError(f"the store took {info.size} bytes, we sent {expected}")
        if info.confirmed:
            return  # the store's own answer covers it: no HEAD needed
        head = await self.store.head(bucket, key)
        if head is None or head.size != expected:
            got = None if head is None else head.size
            raise IntegrityError(f"after upload the store holds {got} bytes, not {expected}")

    async def _discard(self, bucket: str, key: str, object_id: str) -> None:
        try:
            await self.store.delete(bucket, key)
        except StoreError:
            log.warning("could not delete duplicate upload; the sweep will", extra={"key": key})
            return
        await self.repo.forget_object(object_id)

    async def _rollback(self, pending: PendingWrite, uploaded: bool) -> None:
        try:
            if not await self.repo.still_pending(pending):
                # A later attempt with the same reserved id (jobs) already cleaned this
                # write up and may have stored the key again: nothing here is ours now.
                return
            if uploaded:
                await self.store.delete(pending.bucket, pending.key)
            await self.repo.abandon(pending)
        except Exception:
            # The pending rows stay behind and name the key: the sweep finishes the job.
            log.warning(
                "rollback incomplete; left for the sweep",
                exc_info=True,
                extra={"category": "cleanup", "key": pending.key},
            )


async def _settled(task: asyncio.Future[PendingWrite]) -> PendingWrite | None:
    """The pending write, once its transaction has ended; None if it failed."""
    try:
        return await task
    except Exception:
        return None


def _abandon(fut: asyncio.Future[Any]) -> None:
    """A check nobody will wait for: stop it if it has not started, and take its outcome
    so that a failure is not reported as never retrieved."""
    if not fut.done():
        fut.cancel()
    fut.add_done_callback(lambda f: f.cancelled() or f.exception())


def _key_id(asset_id: str, *, reserved: bool) -> str:
    """The asset id as it appears in the object key. A reserved id (job items, presigned
    uploads) is written again when an attempt fails, and a failed attempt's delete can
    reach the store late: obstore retries it through an outage, and a shielded rollback
    outlives the deadline that gave up on it. Each such write therefore gets a key of its
    own, so no stale delete can remove a newer write's object."""
    return f"{asset_id}-{secrets.token_hex(4)}" if reserved else asset_id


async def _gather(chunks: AsyncIterator[bytes], want: int) -> tuple[list[bytes], bool]:
    """Chunks until at least ``want`` bytes are read, or to the end (then True)."""
    parts: list[bytes] = []
    size = 0
    while size < want:
        try:
            chunk = await anext(chunks)
        except StopAsyncIteration:
            return parts, True
        parts.append(chunk)
        size += len(chunk)
    return parts, False


async def _read_head(chunks: AsyncIterator[bytes], want: int) -> tuple[bytes, bool]:
    parts, eof = await _gather(chunks, want)
    return b"".join(parts), eof


async def _whole_if_small(chunks: AsyncIterator[bytes], limit: int) -> bytes | AsyncIterator[bytes]:
    """The whole body as one buffer if it ends within ``limit`` bytes; else a stream that
    replays what was read and goes on. Without it the store joined one copy for its PUT
    while the spool held the chunks for another: two buffers per image in flight."""
    parts, eof = await _gather(chunks, limit + 1)
    return b"".join(parts) if eof else _replay(parts, chunks)


async def _replay(parts: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    while parts:
        yield parts.pop(0)
    async for chunk in rest:
        yield chunk


class _Meter:
    """Passes the source's bytes on while counting them and enforcing the size cap.

    Errors raised here are remembered, because the store client may wrap or swallow an
    exception raised inside the body it is consuming."""

    def __init__(
        self,
        head: bytes,
        rest: AsyncIterator[bytes],
        eof: bool,
        limit: int,
        declared: int | None,
        on_bytes: ByteProgress | None,
    ) -> None:
        self._head = head
        self._rest = rest
        self._eof = eof
        self._limit = limit
        self._declared = declared
        self._on_bytes = on_bytes
        self.size = 0
        self.tail = b""
        self.error: BaseException | None = None
        self._last_report = 0.0

    def _take(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self._limit:
            raise FileTooLarge(f"the source is larger than the limit of {self._limit} bytes")
        if self._declared is not None and self.size > self._declared:
            raise SizeMismatch(f"the server sent more than the {self._declared} bytes it announced")
        self.tail = (
            chunk[-TAIL_BYTES:] if len(chunk) >= TAIL_BYTES else (self.tail + chunk)[-TAIL_BYTES:]
        )
        if self._on_bytes is not None:
            now = time.monotonic()
            if now - self._last_report >= 0.1:
                self._last_report = now
                self._on_bytes(self.size, self._declared)

    async def body(self) -> AsyncIterator[bytes]:
        try:
            self._take(self._head)
            yield self._head
            if self._eof:
                return
            async for chunk in self._rest:
                self._take(chunk)
                yield chunk
        except BaseException as exc:
            self.error = exc
            raise
        if self._on_bytes is not None:
            self._on_bytes(self.size, self._declared)


class _Digest:
    """The bytes as stored: after the metadata filter, hashed, counted, and (for images)
    copied to a spool file for the decode check. One pass, no second read."""

    def __init__(
        self,
        source: AsyncIterator[bytes],
        flt: MetadataFilter | None,
        spool: Spool | None,
    ) -> None:
        self._source = source
        self._filter = flt
        self._spool = spool
        self.sha256 = StreamHash()
        self.size = 0
        self.error: BaseException | None = None

    def _emit(self, data: bytes) -> bytes:
        self.sha256.update(data)
        self.size += len(data)
        if self._spool is not None:
            self._spool.write(data)
        return data

    async def stream(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._source:
                data = self._filter.feed(chunk) if self._filter is not None else chunk
                if data:
                    yield self._emit(data)
            if self._filter is not None:
                tail = self._filter.close()
                if tail:
                    yield self._emit(tail)
            # The body is in: hash it while it uploads.
            self.sha256.finish()
        except BaseException as exc:
            self.error = exc
            raise
