"""``mediakeep verify``: read objects back and check them against their records."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from ..db.models import StoredObject, Variant
from ..errors import NotFound, StoreError
from ..stores.base import ObjectStore

if TYPE_CHECKING:
    from ..keep import MediaKeep

BytesProgress = Callable[[int], None]


@dataclass
class Problem:
    bucket: str
    key: str
    problem: str  # missing | size_mismatch | sha256_mismatch | unreadable
    object_id: str
    expected_size: int | None = None
    actual_size: int | None = None
    expected_sha256: str | None = None
    actual_sha256: str | None = None
    detail: str | None = None


@dataclass
class VerifyReport:
    checked: int = 0
    ok: int = 0
    bytes_read: int = 0
    problems: list[Problem] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Target:
    object_id: str
    bucket: str
    key: str
    size: int | None
    sha256: str | None


async def planned(keep: MediaKeep, *, owner: str | None, sample: int | None) -> list[Target]:
    """The objects (and their variants) to check: all of them, or a random sample."""
    stmt = select(
        StoredObject.id,
        StoredObject.bucket,
        StoredObject.key,
        StoredObject.size,
        StoredObject.sha256,
    ).where(StoredObject.status == "stored")
    if owner is not None:
        stmt = stmt.where(StoredObject.owner == owner)
    stmt = stmt.order_by(func.random()).limit(sample) if sample else stmt.order_by(StoredObject.id)
    async with keep.repo.reads() as s:
        rows = (await s.execute(stmt)).all()
        ids = [r[0] for r in rows]
        variants: list[Any] = []
        for i in range(0, len(ids), 500):
            variants += (
                await s.execute(
                    select(
                        Variant.object_id, Variant.bucket, Variant.key, Variant.size, Variant.sha256
                    ).where(Variant.object_id.in_(ids[i : i + 500]), Variant.status == "stored")
                )
            ).all()
    return [Target(*r) for r in rows] + [Target(*v) for v in variants]


async def check(
    store: ObjectStore, t: Target, on_bytes: BytesProgress | None = None
) -> Problem | None:
    digest = hashlib.sha256()
    size = 0
    try:
        async for chunk in store.get(t.bucket, t.key):
            digest.update(chunk)
            size += len(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    except NotFound:
        return Problem(t.bucket, t.key, "missing", t.object_id, expected_size=t.size)
    except StoreError as exc:
        return Problem(t.bucket, t.key, "unreadable", t.object_id, detail=exc.message)
    actual = digest.hexdigest()
    if t.size is not None and size != t.size:
        return Problem(
            t.bucket, t.key, "size_mismatch", t.object_id, expected_size=t.size, actual_size=size
        )
    if t.sha256 is not None and actual != t.sha256:
        return Problem(
            t.bucket,
            t.key,
            "sha256_mismatch",
            t.object_id,
            expected_sha256=t.sha256,
            actual_sha256=actual,
        )
    return None


async def verify(
    keep: MediaKeep,
    targets: list[Target],
    *,
    concurrency: int = 4,
    on_bytes: BytesProgress | None = None,
) -> VerifyReport:
    report = VerifyReport()
    todo = iter(targets)

    async def worker() -> None:
        # A few workers pulling from one iterator: no task per object, however many.
        for t in todo:
            problem = await check(keep.store, t, on_bytes)
            report.checked += 1
            if problem is None:
                report.ok += 1
                report.bytes_read += t.size or 0
            else:
                report.problems.append(problem)

    await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    report.problems.sort(key=lambda p: (p.bucket, p.key))
    return report
