"""``MediaKeep``: the one user-facing facade over pipeline, stores and database.

What only some callers use (bundles, jobs, integrations, maintenance) is imported where it
is first used, so a process that stores files pays only for storing them; the mixins'
modules hold the methods and import their own machinery the same way."""

from __future__ import annotations

import asyncio
import builtins
import logging
import re
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .bundles.api import BundlesMixin
from .db import migrate
from .db.engine import create_engine, session_factory
from .db.repo import Location, Repository
from .errors import (
    DownloadFailed,
    FileTooLarge,
    InvalidInput,
    MediaKeepError,
    SizeMismatch,
    StoreError,
    UnsupportedMediaType,
    UploadChecksumMismatch,
    UploadNotReceived,
    UploadSizeMismatch,
    database_unavailable,
)
from .integrations.api import IntegrationsMixin
from .media.render import rendition_prefix
from .models import (
    AssetInfo,
    IngestResult,
    ItemProgress,
    Page,
    PresignedUpload,
    StorageStats,
    SweepReport,
    UploadInfo,
)
from .pipeline.fetch import Fetcher, FetchOptions
from .pipeline.keys import check_template, validate_name
from .pipeline.netguard import NetworkPolicy
from .pipeline.process import MediaConfig, MediaProcessor
from .pipeline.sources import (
    BytesSource,
    FileSource,
    Source,
    SourceLike,
    StoredObjectSource,
    StreamSource,
    UrlSource,
    as_source,
)
from .pipeline.store import PipelineConfig, Stored, StorePipeline, StoreRequest
from .settings import Settings
from .stores.base import ObjectStore, cache_control
from .stores.factory import build_store
from .versions import VersionsMixin

if TYPE_CHECKING:
    from .maintenance.tick import Schedule, TickReport

log = logging.getLogger("mediakeep")


def _stored_result(source: str, stored: Stored) -> IngestResult:
    """The result of a stored file, its URL not signed yet."""
    a = stored.asset
    return IngestResult(
        source=source,
        status="deduplicated" if stored.deduplicated else "stored",
        id=a.id,
        key=a.key,
        size=a.size,
        sha256=a.sha256,
        content_type=a.content_type,
        asset=a,
    )


ProgressCallback = Callable[[ItemProgress], None]
MAX_EXPIRES = 7 * 24 * 3600  # SigV4 presigned URLs cannot live longer
# A presigned upload may still be completed this long after its URL expired: an upload
# that started just before the deadline can take a while to arrive.
UPLOAD_COMPLETE_GRACE = timedelta(hours=1)
STAGING_PREFIX = "_staging/"
_SHA256 = re.compile(r"[0-9a-f]{64}")


class MediaKeep(VersionsMixin, BundlesMixin, IntegrationsMixin):
    """Async API. Use ``async with MediaKeep(settings) as keep:``."""

    def __init__(self, settings: Settings | None = None, *, store: ObjectStore | None = None):
        self.settings = settings or Settings()
        s = self.settings
        check_template(s.key_template)
        self.engine = create_engine(
            s.resolved_database_url,
            pool_size=s.db_pool_size,
            max_overflow=s.db_pool_overflow,
            pool_timeout=s.db_pool_timeout,
        )
        self.repo = Repository(self.engine, session_factory(self.engine))
        self.store: ObjectStore = store or build_store(s)
        self.fetcher = Fetcher(
            NetworkPolicy.build(s.allow_private_networks, s.allowed_hosts, s.trusted_networks),
            FetchOptions(
                connect_timeout=s.connect_timeout,
                read_timeout=s.read_timeout,
                max_retries=s.max_retries,
                retry_backoff=s.retry_backoff,
                retry_max_backoff=s.retry_max_backoff,
                max_redirects=s.max_redirects,
            ),
        )
        self.media = MediaProcessor(MediaConfig.from_settings(s))
        self.pipeline = StorePipeline(
            PipelineConfig(
                private_bucket=s.private_bucket,
                public_bucket=s.public_bucket,
                key_template=s.key_template,
                max_file_size=s.max_file_size,
                allowed_types=s.allowed_types,
                download_timeout=s.download_timeout,
                max_retries=s.max_retries,
                max_image_pixels=s.max_image_pixels,
                public_allowed_types=s.public_allowed_types,
                collection_allowed_types=s.collection_allowed_types,
            ),
            self.store,
            self.repo,
            self.fetcher,
            self.media,
        )
        self._started = False
        self._locations: dict[tuple[str, str | None], tuple[float, Location]] = {}
        self._locating: dict[tuple[str, str | None], asyncio.Future[Location]] = {}
        self._location_epoch = 0  # bumped whenever this process changes where an asset is

    async def __aenter__(self) -> MediaKeep:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        if self._started:
            return
        if self.settings.auto_migrate:
            await migrate.upgrade(self.engine)
        await self.store.start([self.settings.private_bucket, self.settings.public_bucket])
        self._started = True

    async def close(self) -> None:
        await self.fetcher.close()
        self.media.close()
        await self.store.close()
        await self.repo.writes.aclose()
        await self.engine.dispose()
        self._started = False

    # -- storing -------------------------------------------------------------------------

    def _request(
        self,
        owner: str,
        collection: str | None,
        slot: str | None,
        public: bool,
        provider: str | None,
        metadata: dict[str, Any] | None,
    ) -> StoreRequest:
        return StoreRequest(
            owner=owner,
            collection=self.settings.default_collection if collection is None else collection,
            slot=slot,
            public=public,
            provider=provider,
            metadata=dict(metadata or {}),
        )

    async def store_source(
        self,
        source: SourceLike,
        *,
        owner: str,
        collection: str | None = None,
        slot: str | None = None,
        public: bool = False,
        provider: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> IngestResult:
        """Store any source; failures come back as a result with ``status="failed"``."""
        results = await self.store_many(
            [source],
            owner=owner,
            collection=collection,
            slot=slot,
            public=public,
            provider=provider,
            metadata=metadata,
        )
        return results[0]

    async def store_many(
        self,
        sources: Sequence[SourceLike],
        *,
        owner: str,
        collection: str | None = None,
        slot: str | None = None,
        public: bool = False,
        provider: str | None = None,
        metadata: dict[str, Any] | None = None,
        concurrency: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> list[IngestResult]:
        """Store many sources with bounded concurrency. One failure never sinks the rest;
        results come back in input order."""
        req = self._request(owner, collection, slot, public, provider, metadata)
        items = list(sources)
        limit = asyncio.Semaphore(max(1, concurrency or self.settings.ingest_concurrency))
        done = 0
        total = len(items)

        def report(i: int, desc: str, got: int, of: int | None, status: str) -> None:
            if progress is not None:
                progress(ItemProgress(i, desc, got, of, done, total, status))

        async def one(i: int, raw: SourceLike) -> IngestResult:
            nonlocal done
            # The limit is on transfers: a file whose bytes are stored gives its place to
            # the next one while its record is finalized (that holds no buffers).
            await limit.acquire()
            holding = True

            def transferred() -> None:
                nonlocal holding
                if holding:
                    holding = False
                    limit.release()

            try:
                desc = _describe(raw)
                try:
                    src = as_source(raw)
                    desc = src.describe()
                    stored = await self.pipeline.run(
                        src,
                        req,
                        lambda got, of: report(i, desc, got, of, "downloading"),
                        transferred,
                    )
                    # Its URL is signed with everyone else's, once the batch is done.
                    result = _stored_result(desc, stored)
                except MediaKeepError as exc:
                    result = IngestResult(source=desc, status="failed", error=exc.to_dict())
                except Exception as exc:  # a bug must not sink the batch, but must be seen
                    busy = database_unavailable(exc)
                    if busy is None:
                        log.exception("unexpected error storing %s", desc)
                    error = (
                        busy.to_dict()
                        if busy is not None
                        else {"code": "internal_error", "message": type(exc).__name__}
                    )
                    result = IngestResult(source=desc, status="failed", error=error)
                done += 1
                report(i, desc, result.size or 0, result.size, result.status)
                return result
            finally:
                transferred()

        results = list(await asyncio.gather(*(one(i, s) for i, s in enumerate(items))))
        await self._sign_results(results)
        return results

    async def _sign_results(self, results: Sequence[IngestResult]) -> None:
        """Every stored result's URL, in one signing call per bucket (Supabase signs on its
        server: one round trip for the batch instead of one per file). The files are
        stored whatever happens here: a URL that cannot be signed now stays None, and
        ``url()`` signs it later."""
        assets = [r.asset for r in results if r.asset is not None and r.url is None]
        if not assets:
            return
        try:
            urls = await self._urls_for(assets, self.settings.signed_url_expires)
        except MediaKeepError:
            log.warning("could not sign the stored files' URLs", exc_info=True)
            return
        for r in results:
            if r.asset is not None and r.url is None:
                r.url = urls.get(r.asset.id)

    async def _result(self, source: str, stored: Stored) -> IngestResult:
        result = _stored_result(source, stored)
        await self._sign_results([result])
        return result

    async def ingest_url(self, /, url: str, *, owner: str, **kw: Any) -> IngestResult:
        return await self.store_source(UrlSource(url), owner=owner, **kw)

    async def ingest_urls(
        self, /, urls: Sequence[str], *, owner: str, **kw: Any
    ) -> list[IngestResult]:
        return await self.store_many([UrlSource(u) for u in urls], owner=owner, **kw)

    async def put_file(self, /, path: str | Path, *, owner: str, **kw: Any) -> IngestResult:
        return await self.store_source(FileSource(Path(path)), owner=owner, **kw)

    async def put_bytes(
        self, /, data: bytes, *, owner: str, name: str = "<bytes>", **kw: Any
    ) -> IngestResult:
        return await self.store_source(BytesSource(data, name), owner=owner, **kw)

    async def put_stream(
        self, stream: AsyncIterable[bytes], *, owner: str, name: str = "<stream>", **kw: Any
    ) -> IngestResult:
        return await self.store_source(StreamSource(stream, name), owner=owner, **kw)

    async def store_or_raise(self, source: Source, req: StoreRequest) -> Stored:
        """The pipeline without the result wrapping: raises typed errors (used by the API)."""
        return await self.pipeline.run(source, req)

    # -- reading -------------------------------------------------------------------------

    async def locate(self, asset_id: str, *, owner: str | None = None) -> Location:
        """Bucket, key and type of an asset, from a short-lived cache: permanent links are
        hit far more often than assets change. This process drops an entry when it changes
        the asset; other processes see a change within ``location_cache_ttl`` seconds
        (until then a moved or deleted asset's link answers from its old place, a 404)."""
        ttl = self.settings.location_cache_ttl
        cache_key = (asset_id, owner)
        now = time.monotonic()
        if ttl > 0:
            hit = self._locations.get(cache_key)
            if hit is not None and hit[0] > now:
                return hit[1]
        # One lookup per key at a time: when a hot link's entry expires, the requests
        # that arrive together share one query instead of queueing a query each.
        lookup = self._locating.get(cache_key)
        if lookup is None:
            lookup = asyncio.ensure_future(self.repo.locate(asset_id, owner))
            self._locating[cache_key] = lookup
            lookup.add_done_callback(partial(self._located, cache_key))
        epoch = self._location_epoch
        # Shielded: a caller that gives up must not cancel the others' lookup.
        found = await asyncio.shield(lookup)
        # Not kept if the asset changed meanwhile: the lookup may have read the old row.
        if ttl > 0 and epoch == self._location_epoch:
            if len(self._locations) >= 50_000:
                self._locations.clear()
            self._locations[cache_key] = (now + ttl, found)
        return found

    def _located(self, cache_key: tuple[str, str | None], lookup: asyncio.Future[Location]) -> None:
        if self._locating.get(cache_key) is lookup:
            del self._locating[cache_key]
        if not lookup.cancelled():
            lookup.exception()  # retrieved, even if every caller gave up waiting

    def _forget_location(self, asset_id: str) -> None:
        self._location_epoch += 1
        for cache_key in [k for k in self._locations if k[0] == asset_id]:
            del self._locations[cache_key]
        # A lookup already under way may have read the old row: later callers start anew.
        for cache_key in [k for k in self._locating if k[0] == asset_id]:
            del self._locating[cache_key]

    def get_asset_stream(self, asset: AssetInfo) -> AsyncIterator[bytes]:
        """The stored bytes of an asset, streamed."""
        return self.store.get(asset.bucket, asset.key)

    async def get(self, asset_id: str, *, owner: str | None = None) -> AssetInfo:
        return await self.repo.get(asset_id, owner)

    async def list(self, /, *, owner: str, **filters: Any) -> Page:
        return await self.repo.list_assets(owner=owner, **filters)

    async def _urls_for(self, assets: Sequence[AssetInfo], expires_in: int) -> dict[str, str]:
        return await self._sign_located(
            [(a.id, a.public, a.bucket, a.key) for a in assets], expires_in
        )

    async def _sign_located(
        self, located: Sequence[tuple[str, bool, str, str]], expires_in: int
    ) -> dict[str, str]:
        out: dict[str, str] = {}
        by_bucket: dict[str, list[tuple[str, str]]] = {}
        for asset_id, public, bucket, key in located:
            if public:
                out[asset_id] = self.store.public_url(bucket, key)
            else:
                by_bucket.setdefault(bucket, []).append((asset_id, key))
        for bucket, group in by_bucket.items():
            # One signing call per bucket, however many URLs: local for most stores, one
            # round trip for stores that sign on their server (Supabase).
            signed = await self.store.sign_get_async(bucket, [k for _, k in group], expires_in)
            out.update({aid: url for (aid, _), url in zip(group, signed, strict=True)})
        return out

    def _expires(self, expires_in: int | None) -> int:
        value = self.settings.signed_url_expires if expires_in is None else expires_in
        if not 1 <= value <= MAX_EXPIRES:
            raise InvalidInput(f"expires_in must be between 1 and {MAX_EXPIRES} seconds")
        return value

    async def url(
        self, asset_id: str, *, owner: str | None = None, expires_in: int | None = None
    ) -> str:
        asset = await self.repo.get(asset_id, owner)
        return (await self._urls_for([asset], self._expires(expires_in)))[asset.id]

    async def urls(
        self, asset_ids: Sequence[str], *, owner: str | None = None, expires_in: int | None = None
    ) -> dict[str, str]:
        """Signed or public URLs for many assets: one query, one signing call per bucket.
        Ids that do not exist (or belong to someone else) are absent from the answer."""
        expires = self._expires(expires_in)
        located = await self.repo.locate_many(list(dict.fromkeys(asset_ids)), owner)
        return await self._sign_located(located, expires)

    @staticmethod
    def expires_at(expires_in: int) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=expires_in)

    # -- changing ------------------------------------------------------------------------

    async def delete(self, asset_id: str, *, owner: str | None = None) -> None:
        """Delete the asset; its bytes go when no other asset of the owner shares them."""
        self._forget_location(asset_id)
        released = await self.repo.delete_asset(asset_id, owner)
        if released is not None:
            await self._remove_object(released.id, released.bucket, released.key)

    async def _remove_object(self, object_id: str, bucket: str, key: str) -> None:
        if await self._delete_bytes(object_id, bucket, key):
            await self.repo.forget_object(object_id)

    async def _delete_bytes(self, object_id: str, bucket: str, key: str) -> bool:
        """Delete an object, its variants and its cached renditions from the store; False
        leaves the rows for the sweep to retry."""
        variants = (await self.repo.variants_for([object_id])).get(object_id, [])
        try:
            for v in variants:
                await self.store.delete(v.bucket, v.key)
            # Renditions have no rows: they are found by their key prefix. The original goes
            # last, so a failure here leaves it (and the rows) for the retry to find again.
            renditions = [
                info.key async for info in self.store.list_objects(bucket, rendition_prefix(key))
            ]
            for rendition in renditions:
                await self.store.delete(bucket, rendition)
            await self.store.delete(bucket, key)
        except StoreError:
            log.warning("object delete failed; left for the sweep", extra={"key": key})
            return False
        return True

    async def set_visibility(
        self, asset_id: str, public: bool, *, owner: str | None = None
    ) -> AssetInfo:
        """Move the bytes to the public or private bucket. Copy first, switch the record,
        then delete the old copy: an interruption at any point loses nothing."""
        bucket = self.settings.public_bucket if public else self.settings.private_bucket
        info, existing, new = await self.repo.begin_move(asset_id, owner, public, bucket)
        if existing is None and new is None:
            return info
        target = existing
        if new is not None:
            try:
                await self.store.copy(
                    info.bucket, info.key, bucket, new.key, cache_control=cache_control(public)
                )
                head = await self.store.head(bucket, new.key)
                if head is None or head.size != info.size:
                    raise StoreError("the copied object does not match the original")
                await self._copy_variants(info.object_id, new.id, bucket, public)
            except BaseException:
                await self.repo.mark_deleting(new.id)
                raise
            target = new
        assert target is not None
        self._forget_location(asset_id)
        moved, released = await self.repo.finish_move(
            asset_id, target, public, sha256=info.sha256, size=info.size
        )
        if released is not None:
            await self._remove_object(released.id, released.bucket, released.key)
        return moved

    async def _copy_variants(
        self, src_object: str, dst_object: str, bucket: str, public: bool
    ) -> None:
        rows = []
        for v in (await self.repo.variants_for([src_object])).get(src_object, []):
            if v.status == "stored":
                await self.store.copy(
                    v.bucket, v.key, bucket, v.key, cache_control=cache_control(public)
                )
            rows.append(replace(v, bucket=bucket))
        await self.repo.add_variants(dst_object, rows)

    async def sweep(
        self, *, older_than: timedelta = timedelta(hours=1), orphans: bool = False
    ) -> SweepReport:
        """Finish what crashed writers and failed deletes left behind; with ``orphans``,
        also remove objects in the buckets that no record knows (older than the cutoff)."""
        report = SweepReport()
        for obj in await self.repo.objects_to_sweep(older_than):
            if not await self._delete_bytes(obj.id, obj.bucket, obj.key):
                continue
            await self.repo.drop_swept(obj)
            if obj.status == "pending":
                report.pending_removed += 1
            elif obj.status == "deleting":
                report.deleting_removed += 1
            else:
                report.unreferenced_removed += 1
        await self.sweep_uploads()
        report.versions_removed = await self.apply_retention(self.settings.slot_keep_versions)
        if orphans:
            report.orphan_objects_removed = await self._sweep_orphans(older_than)
        return report

    async def _sweep_orphans(self, older_than: timedelta) -> int:
        removed = 0
        for bucket in (self.settings.private_bucket, self.settings.public_bucket):
            batch: builtins.list[str] = []
            async for info in self.store.list_objects(bucket):
                batch.append(info.key)
                if len(batch) >= 500:
                    removed += await self._drop_unknown(bucket, batch)
                    batch = []
            removed += await self._drop_unknown(bucket, batch)
        return removed

    async def _drop_unknown(self, bucket: str, keys: builtins.list[str]) -> int:
        known = await self.repo.known_keys(bucket, keys)
        # Presigned uploads' staging objects are known by their upload records.
        known |= await self.repo.known_staging_keys(bucket, keys)
        n = 0
        for key in keys:
            if key not in known:
                await self.store.delete(bucket, key)
                n += 1
        return n

    # -- uploads, usage ------------------------------------------------------------------

    async def put_stream_or_raise(
        self,
        stream: AsyncIterable[bytes],
        *,
        owner: str,
        name: str = "<stream>",
        collection: str | None = None,
        slot: str | None = None,
        public: bool = False,
        provider: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> IngestResult:
        """Store a stream through the pipeline; failures raise typed errors (the API's
        direct uploads, where the error becomes the response)."""
        req = self._request(owner, collection, slot, public, provider, metadata)
        stored = await self.store_or_raise(StreamSource(stream, name), req)
        return await self._result(name, stored)

    async def presign_upload(
        self,
        *,
        owner: str,
        content_type: str,
        size: int,
        collection: str | None = None,
        slot: str | None = None,
        public: bool = False,
        metadata: dict[str, Any] | None = None,
        sha256: str | None = None,
        expires_in: int | None = None,
    ) -> PresignedUpload:
        """Reserve an asset id and hand out a URL to upload its bytes straight to the store.
        ``complete_upload`` then checks what arrived against what was promised here."""
        req = self._request(owner, collection, slot, public, None, metadata)
        validate_name(req.owner, "owner")
        validate_name(req.collection, "collection")
        if req.slot is not None:
            validate_name(req.slot, "slot")
        if content_type not in self.settings.allowed_types:
            raise UnsupportedMediaType(
                f"{content_type} is not allowed here", content_type=content_type
            )
        if size > self.settings.max_file_size:
            raise FileTooLarge(f"{size} bytes is over the limit of {self.settings.max_file_size}")
        if size < 1:
            raise InvalidInput("size must be at least 1 byte")
        if sha256 is not None and not _SHA256.fullmatch(sha256):
            raise InvalidInput("sha256 must be 64 lowercase hex digits")
        ttl = self._upload_expires(expires_in)
        upload_id = str(uuid.uuid4())
        bucket = self.settings.private_bucket
        # Outside every owner's key space: key templates start with a validated name,
        # which cannot begin with "_".
        staging_key = f"{STAGING_PREFIX}{req.owner}/{upload_id}"
        expires_at = datetime.now(UTC) + timedelta(seconds=ttl)
        await self.repo.create_upload(
            upload_id=upload_id,
            owner=req.owner,
            collection=req.collection,
            slot=req.slot,
            public=req.public,
            metadata=req.metadata,
            bucket=bucket,
            staging_key=staging_key,
            content_type=content_type,
            size=size,
            sha256=sha256,
            expires_at=expires_at,
        )
        signed = await self.store.sign_put_async(bucket, staging_key, ttl, content_type)
        return PresignedUpload(
            asset_id=upload_id,
            upload_url=signed.url,
            method=signed.method,
            headers=dict(signed.headers),
            expires_at=expires_at,
        )

    def _upload_expires(self, expires_in: int | None) -> int:
        value = self.settings.upload_url_expires if expires_in is None else expires_in
        if not 1 <= value <= MAX_EXPIRES:
            raise InvalidInput(f"expires_in must be between 1 and {MAX_EXPIRES} seconds")
        return value

    async def complete_upload(self, upload_id: str, *, owner: str | None) -> IngestResult:
        """Run a presigned upload's bytes through the pipeline as the reserved asset. What
        does not match the promise (type, size, checksum) is rejected and deleted; nothing
        uploaded yet leaves the upload pending; a second call is refused."""
        up = await self.repo.claim_upload(
            upload_id, owner, now=datetime.now(UTC), grace=UPLOAD_COMPLETE_GRACE
        )
        try:
            present = await self.store.head(up.bucket, up.staging_key)
        except BaseException:
            await asyncio.shield(self.repo.set_upload_status(up.id, "pending"))
            raise
        if present is None:
            await self.repo.set_upload_status(up.id, "pending")
            raise UploadNotReceived("nothing has been uploaded to the upload URL yet")
        req = StoreRequest(
            owner=up.owner,
            collection=up.collection,
            slot=up.slot,
            public=up.public,
            metadata=dict(up.metadata),
            asset_id=up.id,
            expected_type=up.content_type,
            expected_size=up.size,
        )
        try:
            stored = await self.store_or_raise(
                StoredObjectSource(self.store, up.bucket, up.staging_key), req
            )
        except (StoreError, DownloadFailed):
            # The store stumbled, not the upload: the client may try again.
            await self.repo.set_upload_status(up.id, "pending")
            raise
        except MediaKeepError as exc:
            await self._finish_upload(up, "rejected")
            if isinstance(exc, SizeMismatch) and not isinstance(exc, UploadSizeMismatch):
                raise UploadSizeMismatch(exc.message) from exc
            raise
        except BaseException:
            await asyncio.shield(self.repo.set_upload_status(up.id, "pending"))
            raise
        if up.sha256 is not None and stored.asset.sha256 != up.sha256:
            await self.delete(up.id, owner=up.owner)
            await self._finish_upload(up, "rejected")
            raise UploadChecksumMismatch("the uploaded bytes do not have the promised sha256")
        await self._finish_upload(up, "completed")
        return await self._result(f"upload:{up.id}", stored)

    async def _finish_upload(self, up: UploadInfo, status: str) -> None:
        try:
            await self.store.delete(up.bucket, up.staging_key)
        except StoreError:
            log.warning(
                "staging object not deleted; left for the sweep",
                extra={"category": "cleanup", "key": up.staging_key},
            )
        await self.repo.set_upload_status(up.id, status)

    async def sweep_uploads(self, *, now: datetime | None = None) -> int:
        """Delete the staging objects and records of presigned uploads past their deadline
        (URL expiry plus the grace for completing). Returns how many were removed."""
        cutoff = (now or datetime.now(UTC)) - UPLOAD_COMPLETE_GRACE
        removed = 0
        for up in await self.repo.uploads_expired_before(cutoff):
            try:
                await self.store.delete(up.bucket, up.staging_key)
            except StoreError:
                continue
            await self.repo.delete_upload(up.id)
            removed += 1
        if removed:
            log.info("expired uploads swept", extra={"category": "cleanup", "count": removed})
        return removed

    async def storage_stats(self, *, owner: str) -> StorageStats:
        return await self.repo.storage_stats(owner)

    async def maintenance_tick(self, *, force: bool = False) -> TickReport:
        """Scheduled housekeeping, for a worker loop to call every minute or so: gc every
        ``gc_interval`` seconds (grace ``gc_grace``) and cache clean-up (the hybrid store's
        local cache, extracted bundles) every ``cache_cleanup_interval``. Returns at once
        when nothing is due, when ``auto_cleanup`` is off (unless ``force``), or when
        another process holds the maintenance lock (one sweep at a time across workers)."""
        from .maintenance.tick import Schedule, tick

        schedule: Schedule | None = getattr(self, "_maintenance_schedule", None)
        if schedule is None:
            schedule = self._maintenance_schedule = Schedule()
        return await tick(self, schedule, force=force)

    async def ping(self) -> None:
        """Raise if the database or the store cannot be reached."""
        await self.repo.ping()
        await self.store.head(self.settings.private_bucket, ".mediakeep-ping")


def _describe(raw: object) -> str:
    if isinstance(raw, Source):
        return raw.describe()
    if isinstance(raw, str | Path):
        return str(raw)
    if isinstance(raw, bytes | bytearray):
        return "<bytes>"
    return "<stream>"
