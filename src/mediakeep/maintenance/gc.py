"""``mediakeep gc``: remove what nothing needs any more, and notice what is gone.

Everything is judged against one cutoff, now minus the grace period: nothing younger is
touched, so a write in flight (its object in the store before its record is final, or a
variant uploaded just before its row) is never mistaken for garbage.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy import exc as sa_exc

from ..db import slots
from ..db.models import Asset, Generation, GenerationMedia, StoredObject, Variant
from ..errors import MediaKeepError, NotFound, StoreError

if TYPE_CHECKING:
    from ..keep import MediaKeep

log = logging.getLogger("mediakeep.gc")

# Presigned uploads may still be completed this long after their URL expired (keep.py).
_UPLOAD_COMPLETE_GRACE = timedelta(hours=1)
_BATCH = 500


@dataclass
class GcReport:
    """Counts and bytes of what was removed (with ``dry_run``: what would be)."""

    dry_run: bool
    grace_seconds: float
    orphans: int = 0  # objects in the store that no record knows
    orphan_bytes: int = 0
    pending: int = 0  # writes that never finished
    pending_bytes: int = 0
    deleting: int = 0  # released objects whose removal did not finish
    deleting_bytes: int = 0
    unreferenced: int = 0  # stored objects no asset points at
    unreferenced_bytes: int = 0
    expired_uploads: int = 0  # presigned uploads past their expiry, with their staging file
    expired_upload_bytes: int = 0
    old_versions: int = 0  # slot versions beyond MEDIAKEEP_SLOT_KEEP_VERSIONS
    old_version_bytes: int = 0
    failed_generation_files: int = 0  # stored media of generations that ended failed
    failed_generation_bytes: int = 0
    old_jobs: int = 0  # finished jobs past MEDIAKEEP_JOB_RETENTION, with items and events
    missing_marked: int = 0  # records whose object is not in the store (status "missing")
    missing_restored: int = 0  # marked missing before, found again
    young_kept: int = 0  # unknown objects spared because they are younger than the grace
    errors: list[str] = field(default_factory=list)

    @property
    def removed(self) -> int:
        return (
            self.orphans
            + self.pending
            + self.deleting
            + self.unreferenced
            + self.expired_uploads
            + self.old_versions
            + self.failed_generation_files
        )

    @property
    def removed_bytes(self) -> int:
        return (
            self.orphan_bytes
            + self.pending_bytes
            + self.deleting_bytes
            + self.unreferenced_bytes
            + self.expired_upload_bytes
            + self.old_version_bytes
            + self.failed_generation_bytes
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["removed"] = self.removed
        d["removed_bytes"] = self.removed_bytes
        return d


async def collect_garbage(
    keep: MediaKeep,
    *,
    grace: timedelta,
    dry_run: bool = False,
    scan_store: bool = True,
    now: datetime | None = None,
) -> GcReport:
    now = now or datetime.now(UTC)
    cutoff = now - grace
    report = GcReport(dry_run=dry_run, grace_seconds=grace.total_seconds())
    await _records(keep, cutoff, report)
    await _uploads(keep, min(now - _UPLOAD_COMPLETE_GRACE, cutoff), report)
    await _retention(keep, cutoff, report)
    await _failed_generations(keep, cutoff, report)
    await _job_history(keep, now, report)
    if scan_store:
        for bucket in dict.fromkeys((keep.settings.private_bucket, keep.settings.public_bucket)):
            await _scan_bucket(keep, bucket, cutoff, report)
    return report


async def _job_history(keep: MediaKeep, now: datetime, report: GcReport) -> None:
    """Finished jobs are history, not data: without a limit the jobs, items and events
    tables grow with every request ever made. The assets they stored stay."""
    s = keep.settings
    if s.job_retention <= 0:
        return
    while True:
        removed = await keep.job_repo.prune_finished(
            finished_before=now - timedelta(seconds=s.job_retention),
            created_before=now - timedelta(seconds=s.idempotency_ttl),
            limit=_BATCH,
            dry_run=report.dry_run,
        )
        report.old_jobs += removed
        # Batches keep each transaction (and SQLite's write lock) short.
        if report.dry_run or removed < _BATCH:
            return


async def _records(keep: MediaKeep, cutoff: datetime, report: GcReport) -> None:
    unreferenced = ~select(Asset.id).where(Asset.object_id == StoredObject.id).exists()
    async with keep.repo.reads() as s:
        rows = list(
            (
                await s.execute(
                    select(StoredObject).where(
                        or_(
                            and_(
                                StoredObject.status == "pending", StoredObject.created_at < cutoff
                            ),
                            and_(
                                StoredObject.status == "deleting",
                                StoredObject.updated_at < cutoff,
                            ),
                            and_(
                                StoredObject.status == "stored",
                                StoredObject.updated_at < cutoff,
                                unreferenced,
                            ),
                        )
                    )
                )
            ).scalars()
        )
    variants = await keep.repo.variants_for([o.id for o in rows])
    for obj in rows:
        size = obj.size
        if size is None:  # a pending write never recorded its size: ask the store
            try:
                head = await keep.store.head(obj.bucket, obj.key)
            except StoreError:
                head = None
            size = head.size if head is not None else 0
        size += sum(v.size or 0 for v in variants.get(obj.id, []) if v.status == "stored")
        if not report.dry_run:
            # The same two steps as the library's own sweep: bytes first, rows after.
            if not await keep._delete_bytes(obj.id, obj.bucket, obj.key):
                report.errors.append(f"could not delete {obj.bucket}/{obj.key}")
                continue
            await keep.repo.drop_swept(obj)
        if obj.status == "pending":
            report.pending += 1
            report.pending_bytes += size
        elif obj.status == "deleting":
            report.deleting += 1
            report.deleting_bytes += size
        else:
            report.unreferenced += 1
            report.unreferenced_bytes += size


async def _uploads(keep: MediaKeep, cutoff: datetime, report: GcReport) -> None:
    seen: set[str] = set()
    while True:
        batch = [
            u for u in await keep.repo.uploads_expired_before(cutoff, _BATCH) if u.id not in seen
        ]
        if not batch:
            return
        for up in batch:
            seen.add(up.id)
            try:
                head = await keep.store.head(up.bucket, up.staging_key)
                if not report.dry_run:
                    await keep.store.delete(up.bucket, up.staging_key)
                    await keep.repo.delete_upload(up.id)
            except StoreError as exc:
                report.errors.append(f"upload {up.id}: {exc.message}")
                continue
            report.expired_uploads += 1
            report.expired_upload_bytes += head.size if head is not None else 0
        if report.dry_run:
            return  # nothing was removed, so the next query would return the same rows


async def _retention(keep: MediaKeep, cutoff: datetime, report: GcReport) -> None:
    keep_last = keep.settings.slot_keep_versions
    if keep_last <= 0:
        return
    async with keep.repo.reads() as s:
        victims = dict(await slots.retention_victims(s, keep_last))
        old = (
            await s.execute(
                select(Asset.id, Asset.size).where(
                    Asset.id.in_(list(victims)), Asset.created_at < cutoff
                )
            )
        ).all()
    for asset_id, size in old:
        if not report.dry_run:
            try:
                await keep.delete(asset_id, owner=victims[asset_id])
            except NotFound:
                continue  # removed by someone else meanwhile
            except MediaKeepError as exc:
                report.errors.append(f"version {asset_id}: {exc.message}")
                continue
        report.old_versions += 1
        report.old_version_bytes += int(size or 0)


async def _failed_generations(keep: MediaKeep, cutoff: datetime, report: GcReport) -> None:
    async with keep.repo.reads() as s:
        rows = (
            await s.execute(
                select(Generation.id, Generation.owner, func.count(), func.sum(Asset.size))
                .join(GenerationMedia, GenerationMedia.generation_id == Generation.id)
                .join(Asset, Asset.id == GenerationMedia.asset_id)
                .where(
                    Generation.status == "failed",
                    Generation.updated_at < cutoff,
                    GenerationMedia.status == "stored",
                )
                .group_by(Generation.id, Generation.owner)
            )
        ).all()
    for generation_id, owner, files, size in rows:
        if not report.dry_run:
            try:
                files = await keep.cleanup_generation(generation_id, owner=owner)
            except MediaKeepError as exc:
                report.errors.append(f"generation {generation_id}: {exc.message}")
                continue
        report.failed_generation_files += int(files or 0)
        report.failed_generation_bytes += int(size or 0)


async def _scan_bucket(keep: MediaKeep, bucket: str, cutoff: datetime, report: GcReport) -> None:
    """Orphans (listed, unknown) and missing objects (known, not listed) in one listing."""
    listed_from = datetime.now(UTC)
    present: dict[str, int] = {}
    batch: list[tuple[str, int, datetime | None]] = []
    try:
        async for info in keep.store.list_objects(bucket):
            present[info.key] = info.size
            batch.append((info.key, info.size, info.last_modified))
            if len(batch) >= _BATCH:
                await _drop_orphans(keep, bucket, batch, cutoff, report)
                batch = []
        await _drop_orphans(keep, bucket, batch, cutoff, report)
    except StoreError as exc:
        # An incomplete listing must not mark anything missing.
        report.errors.append(f"listing {bucket}: {exc.message}")
        return
    await _mark_missing(keep, bucket, present, min(cutoff, listed_from), report)


async def _drop_orphans(
    keep: MediaKeep,
    bucket: str,
    batch: list[tuple[str, int, datetime | None]],
    cutoff: datetime,
    report: GcReport,
) -> None:
    if not batch:
        return
    keys = [k for k, _, _ in batch]
    known = await keep.repo.known_keys(bucket, keys)
    known |= await keep.repo.known_staging_keys(bucket, keys)
    for key, size, modified in batch:
        if key in known:
            continue
        if modified is None or modified >= cutoff:
            # Unknown age counts as young: better an orphan kept than a write lost.
            report.young_kept += 1
            continue
        if not report.dry_run:
            await keep.store.delete(bucket, key)
        report.orphans += 1
        report.orphan_bytes += size


async def _mark_missing(
    keep: MediaKeep, bucket: str, present: dict[str, int], before: datetime, report: GcReport
) -> None:
    async with keep.repo.reads() as s:
        stored = (
            await s.execute(
                select(StoredObject.id, StoredObject.key).where(
                    StoredObject.bucket == bucket,
                    StoredObject.status == "stored",
                    StoredObject.created_at < before,
                )
            )
        ).all()
        variants = (
            await s.execute(
                select(Variant.id, Variant.key).where(
                    Variant.bucket == bucket,
                    Variant.status == "stored",
                    Variant.created_at < before,
                )
            )
        ).all()
        marked = (
            await s.execute(
                select(StoredObject.id, StoredObject.key, StoredObject.size).where(
                    StoredObject.bucket == bucket, StoredObject.status == "missing"
                )
            )
        ).all()
    gone = [oid for oid, key in stored if key not in present]
    gone_variants = [vid for vid, key in variants if key not in present]
    back = [oid for oid, key, size in marked if present.get(key, -1) == size]
    report.missing_marked += len(gone) + len(gone_variants)
    if report.dry_run:
        report.missing_restored += len(back)
        return
    for i in range(0, len(gone), _BATCH):
        async with keep.repo.sessions.begin() as s:
            # sha256 goes with the mark: the dedup constraint must not stop the same bytes
            # from being stored again (the assets keep their own sha256).
            await s.execute(
                update(StoredObject)
                .where(StoredObject.id.in_(gone[i : i + _BATCH]), StoredObject.status == "stored")
                .values(status="missing", sha256=None)
            )
    for i in range(0, len(gone_variants), _BATCH):
        async with keep.repo.sessions.begin() as s:
            await s.execute(
                update(Variant)
                .where(Variant.id.in_(gone_variants[i : i + _BATCH]))
                .values(status="missing")
            )
    if gone:
        log.warning("objects missing from the store", extra={"count": len(gone), "bucket": bucket})
    for oid in back:
        if await _restore(keep, oid):
            report.missing_restored += 1


async def _restore(keep: MediaKeep, object_id: str) -> bool:
    try:
        async with keep.repo.sessions.begin() as s:
            sha = await s.scalar(
                select(Asset.sha256).where(Asset.object_id == object_id, Asset.sha256.is_not(None))
            )
            if sha is None:
                return False
            await s.execute(
                update(StoredObject)
                .where(StoredObject.id == object_id, StoredObject.status == "missing")
                .values(status="stored", sha256=sha)
            )
    except sa_exc.IntegrityError:
        return False  # the same bytes were stored again meanwhile: that copy stands
    return True
