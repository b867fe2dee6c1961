"""Every database read and write the library makes, each in its own short transaction."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ..errors import InvalidInput, NotFound, UploadExpired, UploadNotPending
from ..media.render import rendition_source
from ..models import AssetInfo, Page, StorageStats, UploadInfo, UsageBreakdown
from . import slots, writes
from .engine import read_session_factory
from .models import Asset, StoredObject, Upload, Variant, new_id, utcnow
from .writes import WriteRunner


@dataclass
class PendingWrite:
    asset_id: str
    object_id: str
    bucket: str
    key: str
    # The asset row as inserted: finalizing needs no re-read of it.
    row: dict[str, Any] = field(default_factory=dict)


@dataclass
class Finalized:
    asset: AssetInfo
    deduplicated: bool
    discard_key: str | None  # our upload, made redundant by an existing identical object
    object_id: str = ""  # the object the asset now points at


@dataclass(frozen=True)
class Location:
    asset_id: str
    public: bool
    bucket: str
    key: str
    content_type: str
    sha256: str
    size: int


@dataclass
class VariantRow:
    preset: str
    bucket: str
    key: str
    status: str
    content_type: str | None = None
    size: int | None = None
    width: int | None = None
    height: int | None = None
    sha256: str | None = None
    error: str | None = None


def _info(asset: Asset, obj: StoredObject) -> AssetInfo:
    return AssetInfo(
        object_id=obj.id,
        media_info=asset.media_info,
        version=asset.version,
        id=asset.id,
        owner=asset.owner,
        collection=asset.collection,
        slot=asset.slot,
        visibility=asset.visibility,
        status=asset.status,
        bucket=obj.bucket,
        key=obj.key,
        size=asset.size or 0,
        sha256=asset.sha256 or "",
        content_type=asset.content_type or obj.content_type,
        media_kind=asset.media_kind or "other",
        width=asset.width,
        height=asset.height,
        duration=asset.duration,
        source_url=asset.source_url,
        provider=asset.provider,
        metadata=asset.provider_metadata or {},
        created_at=asset.created_at,
        updated_at=asset.updated_at,
    )


def _info_from(row: dict[str, Any], bucket: str, key: str) -> AssetInfo:
    return AssetInfo(
        object_id=row["object_id"],
        media_info=row.get("media_info"),
        version=row.get("version"),
        id=row["id"],
        owner=row["owner"],
        collection=row["collection"],
        slot=row["slot"],
        visibility=row["visibility"],
        status=row["status"],
        bucket=bucket,
        key=key,
        size=row.get("size") or 0,
        sha256=row.get("sha256") or "",
        content_type=row["content_type"],
        media_kind=row.get("media_kind") or "other",
        width=row.get("width"),
        height=row.get("height"),
        duration=row.get("duration"),
        source_url=row.get("source_url"),
        provider=row.get("provider"),
        metadata=row.get("provider_metadata") or {},
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def encode_cursor(created_at: datetime, asset_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), asset_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts, asset_id = json.loads(raw)
        return datetime.fromisoformat(ts), str(asset_id)
    except (ValueError, TypeError) as exc:
        raise InvalidInput("invalid cursor") from exc


class Repository:
    def __init__(self, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.engine = engine
        self.sessions = sessions
        # For blocks that only read: on SQLite they run beside the writer instead of queueing.
        self.reads = read_session_factory(engine)
        self.writes = WriteRunner(engine)
        self._lock_rows = engine.dialect.name == "postgresql"

    def _for_update(self, stmt: Any) -> Any:
        # SQLite serialises writers with BEGIN IMMEDIATE; PostgreSQL needs row locks.
        return stmt.with_for_update() if self._lock_rows else stmt

    async def begin_write(
        self,
        *,
        owner: str,
        collection: str,
        slot: str | None,
        public: bool,
        bucket: str,
        key: str,
        content_type: str,
        media_kind: str,
        source_url: str | None,
        provider: str | None,
        metadata: dict[str, Any],
        asset_id: str,
        width: int | None = None,
        height: int | None = None,
        duration: float | None = None,
    ) -> PendingWrite:
        """Phase one: record the intent (pending rows naming the key) before any bytes move."""
        # Core inserts with ids made here, no ORM unit of work (this runs once per stored
        # file, so it is on the throughput path).
        now = utcnow()
        object_id = new_id()
        row: dict[str, Any] = {
            "id": asset_id,
            "owner": owner,
            "collection": collection,
            "slot": slot,
            "visibility": "public" if public else "private",
            "status": "pending",
            "object_id": object_id,
            "content_type": content_type,
            "media_kind": media_kind,
            "width": width,
            "height": height,
            "duration": duration,
            "source_url": source_url,
            "provider": provider,
            "provider_metadata": metadata,
            "created_at": now,
            "updated_at": now,
        }
        await self.writes.run(
            writes.insert_pending,
            single=True,
            object_row={
                "id": object_id,
                "owner": owner,
                "bucket": bucket,
                "key": key,
                "content_type": content_type,
                "status": "pending",
                "created_at": now,
                "updated_at": now,
            },
            asset_row=row,
        )
        return PendingWrite(asset_id=asset_id, object_id=object_id, bucket=bucket, key=key, row=row)

    async def finalize(
        self,
        pending: PendingWrite,
        *,
        sha256: str,
        size: int,
        media_info: dict[str, Any] | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> Finalized:
        """Phase three: mark stored, or point at an identical object this owner already has."""
        for _attempt in range(3):
            try:
                return await self._finalize_once(
                    pending,
                    sha256=sha256,
                    size=size,
                    media_info=media_info,
                    width=width,
                    height=height,
                )
            except sa_exc.IntegrityError:
                # A concurrent writer stored the same bytes first; the next pass finds it.
                continue
        raise RuntimeError("could not finalize write after concurrent conflicts")

    async def _finalize_once(
        self,
        p: PendingWrite,
        *,
        sha256: str,
        size: int,
        media_info: dict[str, Any] | None,
        width: int | None,
        height: int | None,
    ) -> Finalized:
        row = dict(p.row)
        now = utcnow()
        values: dict[str, Any] = {
            "sha256": sha256,
            "size": size,
            "status": "stored",
            "updated_at": now,
            "media_info": media_info if media_info is not None else row.get("media_info"),
            "width": width if width is not None else row["width"],
            "height": height if width is not None else row["height"],
            "duration": row["duration"],
            "version": None,
        }
        done: tuple[str, str, str | None] | None = None
        if self.writes.one_statement_finalize and row["slot"] is None:
            # PostgreSQL: one round trip when the bytes are new to the owner (most files).
            done = await self.writes.run(
                writes.finalize_new, single=True, key=p.key, bucket=p.bucket, row=row, values=values
            )
        if done is None:
            done = await self.writes.run(
                writes.finalize,
                key=p.key,
                bucket=p.bucket,
                row=row,
                values=values,
                lock_rows=self._lock_rows,
            )
        object_id, key, discard = done
        row.update(values)
        return Finalized(_info_from(row, p.bucket, key), discard is not None, discard, object_id)

    async def set_media_facts(
        self,
        asset_id: str,
        *,
        width: int | None,
        height: int | None,
        duration: float | None,
        media_info: dict[str, Any],
    ) -> AssetInfo:
        async with self.sessions.begin() as s:
            asset = await s.get(Asset, asset_id)
            if asset is None:
                raise NotFound("no such asset")
            asset.width = width if width is not None else asset.width
            asset.height = height if height is not None else asset.height
            asset.duration = duration if duration is not None else asset.duration
            asset.media_info = media_info
            obj = await s.get(StoredObject, asset.object_id)
            assert obj is not None
            await s.flush()
            return _info(asset, obj)

    async def add_variants(self, object_id: str, rows: Sequence[VariantRow]) -> None:
        if not rows:
            return
        async with self.sessions.begin() as s:
            for r in rows:
                s.add(
                    Variant(
                        object_id=object_id,
                        preset=r.preset,
                        bucket=r.bucket,
                        key=r.key,
                        status=r.status,
                        content_type=r.content_type,
                        size=r.size,
                        width=r.width,
                        height=r.height,
                        sha256=r.sha256,
                        error=(r.error or None) and r.error[:500],
                    )
                )

    async def variants_for(self, object_ids: Sequence[str]) -> dict[str, list[VariantRow]]:
        if not object_ids:
            return {}
        out: dict[str, list[VariantRow]] = {}
        async with self.reads() as s:
            rows = await s.execute(
                select(Variant)
                .where(Variant.object_id.in_(list(set(object_ids))))
                .order_by(Variant.preset)
            )
            for v in rows.scalars():
                out.setdefault(v.object_id, []).append(
                    VariantRow(
                        preset=v.preset,
                        bucket=v.bucket,
                        key=v.key,
                        status=v.status,
                        content_type=v.content_type,
                        size=v.size,
                        width=v.width,
                        height=v.height,
                        sha256=v.sha256,
                        error=v.error,
                    )
                )
        return out

    async def still_pending(self, pending: PendingWrite) -> bool:
        """Whether this write's own pending asset row is still there."""
        async with self.reads() as s:
            found = await s.scalar(
                select(Asset.id).where(
                    Asset.id == pending.asset_id,
                    Asset.object_id == pending.object_id,
                    Asset.status == "pending",
                )
            )
        return found is not None

    async def abandon(self, pending: PendingWrite) -> None:
        """Undo phase one after a failed write (the caller removed the bytes). Only our own
        pending row goes: with a reserved id (jobs), a later attempt may have cleaned ours
        up and stored the same id meanwhile, and that row must survive a late rollback."""
        async with self.sessions.begin() as s:
            await s.execute(
                delete(Asset).where(
                    Asset.id == pending.asset_id,
                    Asset.object_id == pending.object_id,
                    Asset.status == "pending",
                )
            )
            await s.execute(
                delete(StoredObject).where(
                    StoredObject.id == pending.object_id, StoredObject.status != "stored"
                )
            )

    async def forget_object(self, object_id: str) -> None:
        async with self.sessions.begin() as s:
            await s.execute(
                delete(StoredObject).where(
                    StoredObject.id == object_id, StoredObject.status != "stored"
                )
            )

    async def get(self, asset_id: str, owner: str | None = None) -> AssetInfo:
        stmt = (
            select(Asset, StoredObject)
            .join(StoredObject, Asset.object_id == StoredObject.id)
            .where(Asset.id == asset_id, Asset.status == "stored")
        )
        if owner is not None:
            stmt = stmt.where(Asset.owner == owner)
        async with self.reads() as s:
            row = (await s.execute(stmt)).first()
        if row is None:
            raise NotFound("no such asset")
        return _info(row[0], row[1])

    async def get_many(self, asset_ids: Sequence[str], owner: str | None) -> dict[str, AssetInfo]:
        if not asset_ids:
            return {}
        stmt = (
            select(Asset, StoredObject)
            .join(StoredObject, Asset.object_id == StoredObject.id)
            .where(Asset.id.in_(list(asset_ids)), Asset.status == "stored")
        )
        if owner is not None:
            stmt = stmt.where(Asset.owner == owner)
        async with self.reads() as s:
            rows = (await s.execute(stmt)).all()
        return {a.id: _info(a, o) for a, o in rows}

    async def locate(self, asset_id: str, owner: str | None) -> Location:
        """Where an asset's bytes are: the lean lookup behind permanent links."""
        stmt = (
            select(
                Asset.visibility,
                StoredObject.bucket,
                StoredObject.key,
                Asset.content_type,
                Asset.sha256,
                Asset.size,
            )
            .join(StoredObject, Asset.object_id == StoredObject.id)
            .where(Asset.id == asset_id, Asset.status == "stored")
        )
        if owner is not None:
            stmt = stmt.where(Asset.owner == owner)
        async with self.reads() as s:
            row = (await s.execute(stmt)).first()
        if row is None:
            raise NotFound("no such asset")
        return Location(
            asset_id, row[0] == "public", row[1], row[2], row[3] or "", row[4] or "", row[5] or 0
        )

    async def locate_many(
        self, asset_ids: Sequence[str], owner: str | None
    ) -> list[tuple[str, bool, str, str]]:
        """(id, public, bucket, key) of stored assets: only what URL signing needs, without
        building full records (10,000 ids in one call is the common batch)."""
        out: list[tuple[str, bool, str, str]] = []
        ids = list(asset_ids)
        for i in range(0, len(ids), 5000):  # below every driver's bound-parameter limit
            stmt = (
                select(Asset.id, Asset.visibility, StoredObject.bucket, StoredObject.key)
                .join(StoredObject, Asset.object_id == StoredObject.id)
                .where(Asset.id.in_(ids[i : i + 5000]), Asset.status == "stored")
            )
            if owner is not None:
                stmt = stmt.where(Asset.owner == owner)
            async with self.reads() as s:
                rows = (await s.execute(stmt)).all()
            out.extend((r[0], r[1] == "public", r[2], r[3]) for r in rows)
        return out

    async def list_assets(
        self,
        *,
        owner: str,
        collection: str | None = None,
        slot: str | None = None,
        kind: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page:
        """Newest first; the cursor continues exactly where the last page ended."""
        stmt = (
            select(Asset, StoredObject)
            .join(StoredObject, Asset.object_id == StoredObject.id)
            .where(Asset.owner == owner, Asset.status == "stored")
        )
        if collection is not None:
            stmt = stmt.where(Asset.collection == collection)
        if slot is not None:
            stmt = stmt.where(Asset.slot == slot)
        if kind is not None:
            stmt = stmt.where(Asset.media_kind == kind)
        if created_after is not None:
            stmt = stmt.where(Asset.created_at >= created_after)
        if created_before is not None:
            stmt = stmt.where(Asset.created_at < created_before)
        if cursor:
            ts, last_id = decode_cursor(cursor)
            stmt = stmt.where(
                or_(Asset.created_at < ts, and_(Asset.created_at == ts, Asset.id < last_id))
            )
        stmt = stmt.order_by(Asset.created_at.desc(), Asset.id.desc()).limit(limit + 1)
        async with self.reads() as s:
            rows = (await s.execute(stmt)).all()
        items = [_info(a, o) for a, o in rows[:limit]]
        next_cursor = None
        if len(rows) > limit and items:
            next_cursor = encode_cursor(items[-1].created_at, items[-1].id)
        return Page(items=items, next_cursor=next_cursor)

    async def delete_asset(self, asset_id: str, owner: str | None) -> StoredObject | None:
        """Remove the asset; returns its object when no other asset still needs the bytes
        (already marked ``deleting``, so the caller can remove them from the store)."""
        async with self.sessions.begin() as s:
            stmt = select(Asset).where(Asset.id == asset_id, Asset.status == "stored")
            if owner is not None:
                stmt = stmt.where(Asset.owner == owner)
            asset = (await s.execute(self._for_update(stmt))).scalar_one_or_none()
            if asset is None:
                raise NotFound("no such asset")
            obj = (
                await s.execute(
                    self._for_update(select(StoredObject).where(StoredObject.id == asset.object_id))
                )
            ).scalar_one()
            await slots.repoint_before_delete(s, asset)
            await s.delete(asset)
            await s.flush()
            return await self._release_if_unused(s, obj)

    async def _release_if_unused(self, s: AsyncSession, obj: StoredObject) -> StoredObject | None:
        refs = await s.scalar(select(func.count()).where(Asset.object_id == obj.id))
        if refs:
            return None
        obj.status = "deleting"
        return obj

    async def begin_move(
        self, asset_id: str, owner: str | None, public: bool, bucket: str
    ) -> tuple[AssetInfo, StoredObject | None, StoredObject | None]:
        """Start a visibility change: returns (asset, existing object in the target bucket
        with the same bytes or None, pending new object to copy into or None)."""
        async with self.sessions.begin() as s:
            stmt = select(Asset).where(Asset.id == asset_id, Asset.status == "stored")
            if owner is not None:
                stmt = stmt.where(Asset.owner == owner)
            asset = (await s.execute(stmt)).scalar_one_or_none()
            if asset is None:
                raise NotFound("no such asset")
            current = await s.get(StoredObject, asset.object_id)
            assert current is not None
            info = _info(asset, current)
            if info.public == public:
                return info, None, None
            existing = (
                await s.execute(
                    select(StoredObject).where(
                        StoredObject.owner == asset.owner,
                        StoredObject.bucket == bucket,
                        StoredObject.sha256 == asset.sha256,
                        StoredObject.status == "stored",
                    )
                )
            ).scalar_one_or_none()
            if existing is not None:
                return info, existing, None
            new = StoredObject(
                owner=asset.owner,
                bucket=bucket,
                key=current.key,
                content_type=current.content_type,
                status="pending",
            )
            s.add(new)
            await s.flush()
            return info, None, new

    async def finish_move(
        self, asset_id: str, target: StoredObject, public: bool, *, sha256: str, size: int
    ) -> tuple[AssetInfo, StoredObject | None]:
        """Point the asset at ``target``; returns the old object if it is now unused."""
        async with self.sessions.begin() as s:
            asset = await s.get(Asset, asset_id)
            if asset is None:
                raise NotFound("no such asset")
            tgt = await s.get(StoredObject, target.id)
            assert tgt is not None
            if tgt.status == "pending":
                tgt.sha256, tgt.size, tgt.status = sha256, size, "stored"
            old = await s.get(StoredObject, asset.object_id)
            assert old is not None
            asset.object_id = tgt.id
            asset.visibility = "public" if public else "private"
            asset.updated_at = utcnow()
            await s.flush()
            released = await self._release_if_unused(s, old)
            return _info(asset, tgt), released

    async def objects_to_sweep(self, older_than: timedelta) -> list[StoredObject]:
        """Pending writes older than ``older_than`` (their writer died), anything marked
        deleting, and stored objects no asset references."""
        cutoff = utcnow() - older_than
        unreferenced = ~select(Asset.id).where(Asset.object_id == StoredObject.id).exists()
        async with self.reads() as s:
            rows = await s.execute(
                select(StoredObject).where(
                    or_(
                        and_(StoredObject.status == "pending", StoredObject.created_at < cutoff),
                        StoredObject.status == "deleting",
                        and_(StoredObject.status == "stored", unreferenced),
                    )
                )
            )
            return list(rows.scalars())

    async def drop_swept(self, obj: StoredObject) -> None:
        async with self.sessions.begin() as s:
            await s.execute(
                delete(Asset).where(Asset.object_id == obj.id, Asset.status == "pending")
            )
            await s.execute(delete(StoredObject).where(StoredObject.id == obj.id))

    async def mark_deleting(self, object_id: str) -> None:
        async with self.sessions.begin() as s:
            await s.execute(
                update(StoredObject).where(StoredObject.id == object_id).values(status="deleting")
            )

    async def known_keys(self, bucket: str, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        # Cached renditions have no rows of their own: one is known while its original is.
        renditions = {k: src for k in keys if (src := rendition_source(k)) is not None}
        async with self.reads() as s:
            rows = await s.execute(
                select(StoredObject.key).where(
                    StoredObject.bucket == bucket,
                    StoredObject.key.in_(list({*keys, *renditions.values()})),
                )
            )
            found = set(rows.scalars())
            rows = await s.execute(
                select(Variant.key).where(Variant.bucket == bucket, Variant.key.in_(list(keys)))
            )
            found |= {k for k, src in renditions.items() if src in found}
            return (found & set(keys)) | set(rows.scalars())

    async def content_type_of(self, bucket: str, key: str) -> str | None:
        async with self.reads() as s:
            return await s.scalar(
                select(StoredObject.content_type).where(
                    StoredObject.bucket == bucket, StoredObject.key == key
                )
            )

    async def ping(self) -> None:
        async with self.reads() as s:
            await s.execute(select(1))

    # -- presigned uploads ---------------------------------------------------------------

    async def create_upload(
        self,
        *,
        upload_id: str,
        owner: str,
        collection: str,
        slot: str | None,
        public: bool,
        metadata: dict[str, Any],
        bucket: str,
        staging_key: str,
        content_type: str,
        size: int,
        sha256: str | None,
        expires_at: datetime,
    ) -> UploadInfo:
        row = Upload(
            id=upload_id,
            owner=owner,
            collection=collection,
            slot=slot,
            public=public,
            provider_metadata=metadata,
            bucket=bucket,
            staging_key=staging_key,
            content_type=content_type,
            size=size,
            sha256=sha256,
            status="pending",
            expires_at=expires_at,
        )
        async with self.sessions.begin() as s:
            s.add(row)
        return _upload_info(row)

    async def get_upload(self, upload_id: str, owner: str | None) -> UploadInfo:
        stmt = select(Upload).where(Upload.id == upload_id)
        if owner is not None:
            stmt = stmt.where(Upload.owner == owner)
        async with self.reads() as s:
            row = (await s.execute(stmt)).scalar_one_or_none()
        if row is None:
            raise NotFound("no such upload")
        return _upload_info(row)

    async def claim_upload(
        self, upload_id: str, owner: str | None, *, now: datetime, grace: timedelta
    ) -> UploadInfo:
        """Move a pending upload to ``completing``, so only one ``complete`` runs it."""
        async with self.sessions.begin() as s:
            stmt = select(Upload).where(Upload.id == upload_id)
            if owner is not None:
                stmt = stmt.where(Upload.owner == owner)
            row = (await s.execute(self._for_update(stmt))).scalar_one_or_none()
            if row is None:
                raise NotFound("no such upload")
            if row.status != "pending":
                raise UploadNotPending(f"the upload is already {row.status}")
            if _aware(row.expires_at) + grace < now:
                raise UploadExpired("the upload expired before it was completed")
            row.status = "completing"
            row.updated_at = utcnow()
            await s.flush()
            return _upload_info(row)

    async def set_upload_status(self, upload_id: str, status: str) -> None:
        async with self.sessions.begin() as s:
            await s.execute(
                update(Upload)
                .where(Upload.id == upload_id)
                .values(status=status, updated_at=utcnow())
            )

    async def pending_upload_at(self, bucket: str, staging_key: str) -> UploadInfo | None:
        async with self.reads() as s:
            row = (
                await s.execute(
                    select(Upload).where(
                        Upload.bucket == bucket,
                        Upload.staging_key == staging_key,
                        Upload.status == "pending",
                    )
                )
            ).scalar_one_or_none()
        return None if row is None else _upload_info(row)

    async def uploads_expired_before(self, cutoff: datetime, limit: int = 1000) -> list[UploadInfo]:
        async with self.reads() as s:
            rows = await s.execute(
                select(Upload)
                .where(Upload.expires_at < cutoff)
                .order_by(Upload.expires_at)
                .limit(limit)
            )
            return [_upload_info(r) for r in rows.scalars()]

    async def delete_upload(self, upload_id: str) -> None:
        async with self.sessions.begin() as s:
            await s.execute(delete(Upload).where(Upload.id == upload_id))

    async def known_staging_keys(self, bucket: str, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        async with self.reads() as s:
            rows = await s.execute(
                select(Upload.staging_key).where(
                    Upload.bucket == bucket, Upload.staging_key.in_(list(keys))
                )
            )
            return set(rows.scalars())

    # -- usage ---------------------------------------------------------------------------

    async def storage_stats(self, owner: str) -> StorageStats:
        stored = and_(Asset.owner == owner, Asset.status == "stored")
        referenced = (
            select(Asset.id)
            .where(Asset.object_id == StoredObject.id, Asset.status == "stored")
            .exists()
        )
        async with self.reads() as s:
            groups = (
                await s.execute(
                    select(
                        Asset.media_kind,
                        Asset.collection,
                        func.count(),
                        func.coalesce(func.sum(Asset.size), 0),
                    )
                    .where(stored)
                    .group_by(Asset.media_kind, Asset.collection)
                )
            ).all()
            objects, stored_bytes = (
                await s.execute(
                    select(func.count(), func.coalesce(func.sum(StoredObject.size), 0)).where(
                        StoredObject.owner == owner, StoredObject.status == "stored", referenced
                    )
                )
            ).one()
        by_kind: dict[str, UsageBreakdown] = {}
        by_collection: dict[str, UsageBreakdown] = {}
        total_assets = total_bytes = 0
        for kind, collection, n, total in groups:
            count, size = int(n or 0), int(total or 0)
            total_assets += count
            total_bytes += size
            for table, name in ((by_kind, kind or "other"), (by_collection, collection)):
                entry = table.setdefault(name, UsageBreakdown())
                entry.assets += count
                entry.bytes += size
        return StorageStats(
            owner=owner,
            assets=total_assets,
            bytes=total_bytes,
            objects=int(objects or 0),
            stored_bytes=int(stored_bytes or 0),
            dedup_savings_bytes=max(0, total_bytes - int(stored_bytes or 0)),
            by_kind=by_kind,
            by_collection=by_collection,
        )


def _aware(value: datetime) -> datetime:
    # SQLite hands timestamps back without a zone; everything we write is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _upload_info(row: Upload) -> UploadInfo:
    return UploadInfo(
        id=row.id,
        owner=row.owner,
        collection=row.collection,
        slot=row.slot,
        public=row.public,
        metadata=row.provider_metadata or {},
        bucket=row.bucket,
        staging_key=row.staging_key,
        content_type=row.content_type,
        size=row.size,
        sha256=row.sha256,
        status=row.status,
        expires_at=_aware(row.expires_at),
    )
