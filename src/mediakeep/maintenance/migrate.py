"""``mediakeep migrate``: copy every object (and its variants) to another store, check each
copy, then switch its records.

The records name a bucket and a key; the store itself is the configuration's. So the
switch is: rows move to the target's bucket names (when they differ from the source's),
and the object is written to a ledger, ``DATA_DIR/migrations/<source+target>.jsonl``.
A second run skips what the ledger (or the rows) say is done, and for anything else first
asks the target whether it already holds the bytes: a run killed at any point resumes
without copying anything twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select, update

from ..db.models import Asset, StoredObject, Variant
from ..errors import IntegrityError, InvalidInput, MediaKeepError, NotFound, ObjectExists
from ..settings import Settings
from ..stores.base import ObjectStore, cache_control
from ..stores.factory import build_store
from .targets import describe, fingerprint

if TYPE_CHECKING:
    from ..keep import MediaKeep

_PAGE = 500


@dataclass
class Failure:
    object_id: str
    bucket: str
    key: str
    reason: str


@dataclass
class MigrationReport:
    source: str
    target: str
    dry_run: bool
    verify: bool
    objects: int = 0  # considered
    copied: int = 0
    copied_bytes: int = 0
    skipped: int = 0  # done before (ledger, switched rows, or already in the target)
    verified: int = 0  # read back from the target and matched size and sha256
    # Records now the target's: rows moved to its bucket names (where they differ) and
    # written to the ledger.
    switched: int = 0
    would_copy: int = 0  # dry run
    would_copy_bytes: int = 0
    failed: list[Failure] = field(default_factory=list)
    ledger: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Item:
    """One key to copy: an object, or one of its variants."""

    bucket: str
    key: str
    target_bucket: str
    size: int | None
    sha256: str | None
    content_type: str


@dataclass
class _Object:
    id: str
    bucket: str
    key: str
    size: int | None
    sha256: str | None
    content_type: str
    status: str


class Migration:
    def __init__(
        self,
        keep: MediaKeep,
        source: Settings,
        target: Settings,
        *,
        owner: str | None = None,
        collection: str | None = None,
        dry_run: bool = False,
        verify: bool = False,
        concurrency: int = 4,
        on_object: Callable[[int], None] | None = None,
    ) -> None:
        if describe(source) == describe(target):
            raise InvalidInput("the source and the target are the same store")
        self.keep = keep
        self.source_settings = source
        self.target_settings = target
        self.owner = owner
        self.collection = collection
        self.dry_run = dry_run
        self.verify = verify
        self.concurrency = max(1, concurrency)
        self.on_object = on_object
        self.buckets = {
            source.private_bucket: target.private_bucket,
            source.public_bucket: target.public_bucket,
        }
        # Rows already in these buckets (and in none of the source's) were switched before.
        self.switched_buckets = set(self.buckets.values()) - set(self.buckets)
        ledger_dir = keep.settings.data_dir / "migrations"
        self.ledger_path = Path(ledger_dir / f"{fingerprint(source, target)}.jsonl").resolve()
        self.report = MigrationReport(
            source=describe(source),
            target=describe(target),
            dry_run=dry_run,
            verify=verify,
            ledger=str(self.ledger_path),
        )
        self.source: ObjectStore = keep.store
        self.target: ObjectStore = keep.store
        self._owned: list[ObjectStore] = []
        self._done: dict[str, bool] = {}

    # -- what to move ---------------------------------------------------------------------

    def _filter(self, stmt: Any) -> Any:
        stmt = stmt.where(StoredObject.status.in_(["stored", "missing"]))
        if self.owner is not None:
            stmt = stmt.where(StoredObject.owner == self.owner)
        if self.collection is not None:
            stmt = stmt.where(
                select(Asset.id)
                .where(Asset.object_id == StoredObject.id, Asset.collection == self.collection)
                .exists()
            )
        return stmt

    async def totals(self) -> tuple[int, int]:
        """How many objects and bytes (originals) the run covers."""
        async with self.keep.repo.reads() as s:
            n, size = (
                await s.execute(
                    self._filter(
                        select(func.count(), func.coalesce(func.sum(StoredObject.size), 0))
                    )
                )
            ).one()
        return int(n or 0), int(size or 0)

    async def _objects(self) -> AsyncIterator[_Object]:
        last = ""
        while True:
            async with self.keep.repo.reads() as s:
                rows = (
                    await s.execute(
                        self._filter(
                            select(
                                StoredObject.id,
                                StoredObject.bucket,
                                StoredObject.key,
                                StoredObject.size,
                                StoredObject.sha256,
                                StoredObject.content_type,
                                StoredObject.status,
                            )
                        )
                        .where(StoredObject.id > last)
                        .order_by(StoredObject.id)
                        .limit(_PAGE)
                    )
                ).all()
            for r in rows:
                yield _Object(*r)
            if len(rows) < _PAGE:
                return
            last = rows[-1][0]

    # -- running --------------------------------------------------------------------------

    async def run(self) -> MigrationReport:
        self._load_ledger()
        if self.source_settings is not self.keep.settings:
            self.source = self._own(build_store(self.source_settings))
        self.target = self._own(build_store(self.target_settings))
        try:
            if not self.dry_run:
                await self.target.start(
                    [self.target_settings.private_bucket, self.target_settings.public_bucket]
                )
            objects = self._objects()
            lock = asyncio.Lock()

            async def worker() -> None:
                while True:
                    async with lock:
                        obj = await anext(objects, None)
                    if obj is None:
                        return
                    await self._one(obj)
                    if self.on_object is not None:
                        self.on_object(obj.size or 0)

            await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        finally:
            for store in self._owned:
                await store.close()
        return self.report

    def _own(self, store: ObjectStore) -> ObjectStore:
        self._owned.append(store)
        return store

    def _load_ledger(self) -> None:
        try:
            lines = self.ledger_path.read_text().splitlines()
        except FileNotFoundError:
            return
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut short by a kill
            oid = entry.get("object")
            if isinstance(oid, str):
                self._done[oid] = self._done.get(oid, False) or bool(entry.get("verified"))

    def _append_ledger(self, object_id: str, verified: bool) -> None:
        self.ledger_path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"object": object_id, "verified": verified}) + "\n"
        # One write() per line with O_APPEND: concurrent workers never interleave.
        fd = os.open(self.ledger_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    async def _one(self, obj: _Object) -> None:
        r = self.report
        r.objects += 1
        if obj.status == "missing":
            r.failed.append(Failure(obj.id, obj.bucket, obj.key, "missing from the source store"))
            return
        if obj.bucket in self.switched_buckets:
            r.skipped += 1
            return
        done = self._done.get(obj.id)
        if done is not None and (done or not self.verify):
            r.skipped += 1
            return
        items = [
            _Item(
                obj.bucket,
                obj.key,
                self.buckets.get(obj.bucket, obj.bucket),
                obj.size,
                obj.sha256,
                obj.content_type,
            )
        ]
        variants = (await self.keep.repo.variants_for([obj.id])).get(obj.id, [])
        for v in variants:
            if v.status == "stored":
                items.append(
                    _Item(
                        v.bucket,
                        v.key,
                        self.buckets.get(v.bucket, v.bucket),
                        v.size,
                        v.sha256,
                        v.content_type or "application/octet-stream",
                    )
                )
        if self.dry_run:
            try:
                there = await self.target.head(items[0].target_bucket, obj.key)
            except MediaKeepError:
                there = None  # e.g. the bucket does not exist yet: everything would move
            if there is not None and there.size == obj.size:
                r.skipped += 1
            else:
                r.would_copy += 1
                r.would_copy_bytes += sum(i.size or 0 for i in items)
            return
        copied = 0
        try:
            for item in items:
                copied += await self._copy(item)
        except MediaKeepError as exc:
            r.failed.append(Failure(obj.id, obj.bucket, obj.key, f"{exc.code}: {exc.message}"))
            return
        try:
            await self._switch(obj, items[0].target_bucket)
        except sa_exc.IntegrityError:
            r.failed.append(
                Failure(obj.id, obj.bucket, obj.key, "the target bucket already has this key")
            )
            return
        await asyncio.to_thread(self._append_ledger, obj.id, self.verify)
        r.switched += 1
        if self.verify:
            r.verified += 1
        if copied:
            r.copied += 1
            r.copied_bytes += copied
        else:
            r.skipped += 1

    async def _copy(self, item: _Item) -> int:
        """Make the target hold the item's bytes; returns how many bytes were copied."""
        there = await self.target.head(item.target_bucket, item.key)
        present = there is not None and there.size == item.size
        if present and (not self.verify or await self._matches(item)):
            return 0
        if there is not None:
            # Not our bytes (a different size, or a different hash): replace them.
            await self.target.delete(item.target_bucket, item.key)
        digest = hashlib.sha256()
        size = 0

        async def body() -> AsyncIterator[bytes]:
            nonlocal size
            async for chunk in self.source.get(item.bucket, item.key):
                digest.update(chunk)
                size += len(chunk)
                yield chunk

        public = item.target_bucket == self.target_settings.public_bucket
        try:
            await self.target.put(
                item.target_bucket,
                item.key,
                body(),
                content_type=item.content_type,
                cache_control=cache_control(public),
            )
        except ObjectExists:
            # Another run (or worker) wrote it meanwhile: judge what is there now.
            if await self._matches(item):
                return 0
            raise
        except NotFound as exc:
            raise NotFound("the object is missing from the source store") from exc
        if (item.size is not None and size != item.size) or (
            item.sha256 is not None and digest.hexdigest() != item.sha256
        ):
            await self.target.delete(item.target_bucket, item.key)
            raise IntegrityError("the source's bytes do not match the record")
        if self.verify:
            if not await self._matches(item):
                raise IntegrityError("the copy read back from the target does not match")
        else:
            head = await self.target.head(item.target_bucket, item.key)
            if head is None or head.size != size:
                raise IntegrityError("the target does not hold the size that was sent")
        return size

    async def _matches(self, item: _Item) -> bool:
        digest = hashlib.sha256()
        size = 0
        try:
            async for chunk in self.target.get(item.target_bucket, item.key):
                digest.update(chunk)
                size += len(chunk)
        except NotFound:
            return False
        return size == item.size and (item.sha256 is None or digest.hexdigest() == item.sha256)

    async def _switch(self, obj: _Object, target_bucket: str) -> None:
        if target_bucket == obj.bucket and all(k == v for k, v in self.buckets.items()):
            return  # the same names on both sides: nothing in the rows changes
        async with self.keep.repo.sessions.begin() as s:
            await s.execute(
                update(StoredObject)
                .where(StoredObject.id == obj.id)
                .values(bucket=self.buckets.get(obj.bucket, obj.bucket))
            )
            for src, dst in self.buckets.items():
                if src != dst:
                    await s.execute(
                        update(Variant)
                        .where(Variant.object_id == obj.id, Variant.bucket == src)
                        .values(bucket=dst)
                    )
