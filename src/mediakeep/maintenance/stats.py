"""``mediakeep stats``: totals by owner, kind, collection and bucket, and what dedup saves."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from ..db.models import Asset, StoredObject, Variant

if TYPE_CHECKING:
    from ..keep import MediaKeep


@dataclass
class Usage:
    assets: int = 0
    bytes: int = 0


@dataclass
class OwnerUsage:
    assets: int = 0
    bytes: int = 0  # the sum of every asset's size
    objects: int = 0
    stored_bytes: int = 0  # what the store holds for them after dedup (originals)
    missing_bytes: int = 0  # recorded objects gc found missing from the store
    dedup_savings_bytes: int = 0


@dataclass
class BucketUsage:
    objects: int = 0
    bytes: int = 0
    variants: int = 0
    variant_bytes: int = 0


@dataclass
class Stats:
    owner: str | None
    assets: int = 0
    bytes: int = 0
    objects: int = 0
    stored_bytes: int = 0
    variant_bytes: int = 0
    dedup_savings_bytes: int = 0
    missing_objects: int = 0
    by_owner: dict[str, OwnerUsage] = field(default_factory=dict)
    by_kind: dict[str, Usage] = field(default_factory=dict)
    by_collection: dict[str, Usage] = field(default_factory=dict)
    by_bucket: dict[str, BucketUsage] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def collect_stats(keep: MediaKeep, *, owner: str | None = None) -> Stats:
    stats = Stats(owner=owner)
    assets = select(
        Asset.owner, Asset.media_kind, Asset.collection, func.count(), func.sum(Asset.size)
    ).where(Asset.status == "stored")
    referenced = select(Asset.id).where(Asset.object_id == StoredObject.id).exists()
    objects = select(
        StoredObject.owner,
        StoredObject.bucket,
        StoredObject.status,
        func.count(),
        func.sum(StoredObject.size),
    ).where(StoredObject.status.in_(["stored", "missing"]), referenced)
    variants = (
        select(Variant.bucket, func.count(), func.sum(Variant.size))
        .join(StoredObject, StoredObject.id == Variant.object_id)
        .where(Variant.status == "stored", StoredObject.status == "stored")
    )
    if owner is not None:
        assets = assets.where(Asset.owner == owner)
        objects = objects.where(StoredObject.owner == owner)
        variants = variants.where(StoredObject.owner == owner)
    async with keep.repo.reads() as s:
        asset_rows = (
            await s.execute(assets.group_by(Asset.owner, Asset.media_kind, Asset.collection))
        ).all()
        object_rows = (
            await s.execute(
                objects.group_by(StoredObject.owner, StoredObject.bucket, StoredObject.status)
            )
        ).all()
        variant_rows = (await s.execute(variants.group_by(Variant.bucket))).all()

    for who, kind, collection, n, total in asset_rows:
        count, size = int(n or 0), int(total or 0)
        stats.assets += count
        stats.bytes += size
        entry = stats.by_owner.setdefault(who, OwnerUsage())
        entry.assets += count
        entry.bytes += size
        for table, name in ((stats.by_kind, kind or "other"), (stats.by_collection, collection)):
            usage = table.setdefault(name, Usage())
            usage.assets += count
            usage.bytes += size
    for who, bucket, status, n, total in object_rows:
        count, size = int(n or 0), int(total or 0)
        owner_entry = stats.by_owner.setdefault(who, OwnerUsage())
        if status == "missing":
            stats.missing_objects += count
            owner_entry.missing_bytes += size
            continue
        stats.objects += count
        stats.stored_bytes += size
        owner_entry.objects += count
        owner_entry.stored_bytes += size
        bucket_entry = stats.by_bucket.setdefault(bucket, BucketUsage())
        bucket_entry.objects += count
        bucket_entry.bytes += size
    for bucket, n, total in variant_rows:
        bucket_entry = stats.by_bucket.setdefault(bucket, BucketUsage())
        bucket_entry.variants += int(n or 0)
        bucket_entry.variant_bytes += int(total or 0)
        stats.variant_bytes += int(total or 0)
    for entry in stats.by_owner.values():
        entry.dedup_savings_bytes = max(0, entry.bytes - entry.stored_bytes - entry.missing_bytes)
    stats.dedup_savings_bytes = sum(e.dedup_savings_bytes for e in stats.by_owner.values())
    return stats
