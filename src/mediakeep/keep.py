"""``MediaKeep``: the one user-facing facade over pipeline, stores and database."""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import AsyncIterable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from .db import migrate
from .db.engine import create_engine, session_factory
from .db.repo import Repository
from .errors import InvalidInput, MediaKeepError, StoreError
from .models import AssetInfo, IngestResult, ItemProgress, Page, SweepReport
from .pipeline.fetch import Fetcher, FetchOptions
from .pipeline.keys import check_template
from .pipeline.netguard import NetworkPolicy
from .pipeline.sources import (
    BytesSource,
    FileSource,
    Source,
    SourceLike,
    StreamSource,
    UrlSource,
    as_source,
)
from .pipeline.store import PipelineConfig, Stored, StorePipeline, StoreRequest
from .settings import Settings
from .stores.base import ObjectStore
from .stores.factory import build_store

log = logging.getLogger("mediakeep")

ProgressCallback = Callable[[ItemProgress], None]
MAX_EXPIRES = 7 * 24 * 3600  # SigV4 presigned URLs cannot live longer


class MediaKeep:
    """Async API. Use ``async with MediaKeep(settings) as keep:``."""

    def __init__(self, settings: Settings | None = None, *, store: ObjectStore | None = None):
        self.settings = settings or Settings()
        s = self.settings
        check_template(s.key_template)
        self.engine = create_engine(s.resolved_database_url)
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
        )
        self._started = False

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
        await self.store.close()
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
            async with limit:
                desc = _describe(raw)
                try:
                    src = as_source(raw)
                    desc = src.describe()
                    stored = await self.pipeline.run(
                        src, req, lambda got, of: report(i, desc, got, of, "downloading")
                    )
                    result = self._result(desc, stored)
                except MediaKeepError as exc:
                    result = IngestResult(source=desc, status="failed", error=exc.to_dict())
                except Exception as exc:  # a bug must not sink the batch, but must be seen
                    log.exception("unexpected error storing %s", desc)
                    result = IngestResult(
                        source=desc,
                        status="failed",
                        error={"code": "internal_error", "message": type(exc).__name__},
                    )
                done += 1
                report(i, desc, result.size or 0, result.size, result.status)
                return result

        return list(await asyncio.gather(*(one(i, s) for i, s in enumerate(items))))

    def _result(self, source: str, stored: Stored) -> IngestResult:
        a = stored.asset
        return IngestResult(
            source=source,
            status="deduplicated" if stored.deduplicated else "stored",
            id=a.id,
            key=a.key,
            size=a.size,
            sha256=a.sha256,
            content_type=a.content_type,
            url=self._urls_for([a], self.settings.signed_url_expires)[a.id],
            asset=a,
        )

    async def ingest_url(self, url: str, *, owner: str, **kw: Any) -> IngestResult:
        return await self.store_source(UrlSource(url), owner=owner, **kw)

    async def ingest_urls(
        self, urls: Sequence[str], *, owner: str, **kw: Any
    ) -> list[IngestResult]:
        return await self.store_many([UrlSource(u) for u in urls], owner=owner, **kw)

    async def put_file(self, path: str | Path, *, owner: str, **kw: Any) -> IngestResult:
        return await self.store_source(FileSource(Path(path)), owner=owner, **kw)

    async def put_bytes(
        self, data: bytes, *, owner: str, name: str = "<bytes>", **kw: Any
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

    async def get(self, asset_id: str, *, owner: str | None = None) -> AssetInfo:
        return await self.repo.get(asset_id, owner)

    async def list(self, *, owner: str, **filters: Any) -> Page:
        return await self.repo.list_assets(owner=owner, **filters)

    def _urls_for(self, assets: Sequence[AssetInfo], expires_in: int) -> dict[str, str]:
        out: dict[str, str] = {}
        by_bucket: dict[str, list[AssetInfo]] = {}
        for a in assets:
            if a.public:
                out[a.id] = self.store.public_url(a.bucket, a.key)
            else:
                by_bucket.setdefault(a.bucket, []).append(a)
        for bucket, group in by_bucket.items():
            # One local signing call per bucket, however many URLs: no network round trips.
            signed = self.store.sign_get(bucket, [a.key for a in group], expires_in)
            out.update({a.id: url for a, url in zip(group, signed, strict=True)})
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
        return self._urls_for([asset], self._expires(expires_in))[asset.id]

    async def urls(
        self, asset_ids: Sequence[str], *, owner: str | None = None, expires_in: int | None = None
    ) -> dict[str, str]:
        """Signed or public URLs for many assets: one query, local signing. Ids that do not
        exist (or belong to someone else) are absent from the answer."""
        assets = await self.repo.get_many(list(dict.fromkeys(asset_ids)), owner)
        return self._urls_for(list(assets.values()), self._expires(expires_in))

    @staticmethod
    def expires_at(expires_in: int) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=expires_in)

    # -- changing ------------------------------------------------------------------------

    async def delete(self, asset_id: str, *, owner: str | None = None) -> None:
        """Delete the asset; its bytes go when no other asset of the owner shares them."""
        released = await self.repo.delete_asset(asset_id, owner)
        if released is not None:
            await self._remove_object(released.id, released.bucket, released.key)

    async def _remove_object(self, object_id: str, bucket: str, key: str) -> None:
        try:
            await self.store.delete(bucket, key)
        except StoreError:
            log.warning("object delete failed; left for the sweep", extra={"key": key})
            return
        await self.repo.forget_object(object_id)

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
                await self.store.copy(info.bucket, info.key, bucket, new.key)
                head = await self.store.head(bucket, new.key)
                if head is None or head.size != info.size:
                    raise StoreError("the copied object does not match the original")
            except BaseException:
                await self.repo.mark_deleting(new.id)
                raise
            target = new
        assert target is not None
        moved, released = await self.repo.finish_move(
            asset_id, target, public, sha256=info.sha256, size=info.size
        )
        if released is not None:
            await self._remove_object(released.id, released.bucket, released.key)
        return moved

    async def sweep(
        self, *, older_than: timedelta = timedelta(hours=1), orphans: bool = False
    ) -> SweepReport:
        """Finish what crashed writers and failed deletes left behind; with ``orphans``,
        also remove objects in the buckets that no record knows (older than the cutoff)."""
        report = SweepReport()
        for obj in await self.repo.objects_to_sweep(older_than):
            try:
                await self.store.delete(obj.bucket, obj.key)
            except StoreError:
                continue
            await self.repo.drop_swept(obj)
            if obj.status == "pending":
                report.pending_removed += 1
            elif obj.status == "deleting":
                report.deleting_removed += 1
            else:
                report.unreferenced_removed += 1
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
        n = 0
        for key in keys:
            if key not in known:
                await self.store.delete(bucket, key)
                n += 1
        return n

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
