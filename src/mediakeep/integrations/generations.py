"""Generation records: one provider call, its request, its outcome and its media files in
order. A generation's media are stored by a job of kind ``generation``; the hooks below
keep the record in step with that job, inside the job's own transactions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import Generation, GenerationMedia, Job, JobItem, utcnow
from ..jobs.hooks import KindHooks, register
from ..jobs.sources import describe, is_data_uri
from ..jobs.types import aware
from .fal import MediaRef

KIND = "generation"


@dataclass
class GenerationMediaInfo:
    position: int
    path: str
    provider_url: str
    content_type: str | None
    width: int | None
    height: int | None
    file_name: str | None
    asset_id: str | None
    status: str  # pending | stored | failed | removed
    error: dict[str, Any] | None

    @property
    def provider_url_usable(self) -> bool:
        # data: URIs are not kept (only their description): there is nothing to link to.
        return not is_data_uri(self.provider_url)

    def to_dict(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "path": self.path,
            "provider_url": self.provider_url,
            "content_type": self.content_type,
            "width": self.width,
            "height": self.height,
            "file_name": self.file_name,
            "asset_id": self.asset_id,
            "status": self.status,
            "error": self.error,
        }


@dataclass
class GenerationInfo:
    id: str
    owner: str
    collection: str
    provider: str
    endpoint: str | None
    request: dict[str, Any]
    status: str  # pending | processing | completed | partial | failed
    request_id: str | None
    metadata: dict[str, Any]
    provider_urls: list[str]
    total_size: int
    is_media_processed: bool
    error: dict[str, Any] | None
    job_id: str | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    media: list[GenerationMediaInfo] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "owner": self.owner,
            "collection": self.collection,
            "provider": self.provider,
            "endpoint": self.endpoint,
            "request": self.request,
            "status": self.status,
            "request_id": self.request_id,
            "metadata": self.metadata,
            "provider_urls": self.provider_urls,
            "total_size": self.total_size,
            "is_media_processed": self.is_media_processed,
            "error": self.error,
            "job_id": self.job_id,
            "media": [m.to_dict() for m in self.media],
            "created_at": aware(self.created_at).isoformat(),
            "updated_at": aware(self.updated_at).isoformat(),
            "completed_at": aware(self.completed_at).isoformat() if self.completed_at else None,
        }


def media_info(row: GenerationMedia) -> GenerationMediaInfo:
    return GenerationMediaInfo(
        position=row.position,
        path=row.path,
        provider_url=row.provider_url,
        content_type=row.content_type,
        width=row.width,
        height=row.height,
        file_name=row.file_name,
        asset_id=row.asset_id,
        status=row.status,
        error=row.error,
    )


def generation_info(row: Generation, media: list[GenerationMedia]) -> GenerationInfo:
    return GenerationInfo(
        id=row.id,
        owner=row.owner,
        collection=row.collection,
        provider=row.provider,
        endpoint=row.endpoint,
        request=dict(row.request or {}),
        status=row.status,
        request_id=row.provider_request_id,
        metadata=dict(row.result_metadata or {}),
        provider_urls=list(row.provider_urls or []),
        total_size=int(row.total_size or 0),
        is_media_processed=bool(row.is_media_processed),
        error=row.error,
        job_id=row.job_id,
        created_at=aware(row.created_at),
        updated_at=aware(row.updated_at),
        completed_at=aware(row.completed_at) if row.completed_at else None,
        media=[media_info(m) for m in sorted(media, key=lambda m: m.position)],
    )


async def load(s: AsyncSession, generation_id: str, owner: str | None) -> GenerationInfo | None:
    stmt = select(Generation).where(Generation.id == generation_id)
    if owner is not None:
        stmt = stmt.where(Generation.owner == owner)
    row = (await s.execute(stmt)).scalar_one_or_none()
    if row is None:
        return None
    media = await s.execute(
        select(GenerationMedia)
        .where(GenerationMedia.generation_id == row.id)
        .order_by(GenerationMedia.position)
    )
    return generation_info(row, list(media.scalars()))


async def by_request(s: AsyncSession, provider: str, request_id: str) -> Generation | None:
    return (
        await s.execute(
            select(Generation).where(
                Generation.provider == provider, Generation.provider_request_id == request_id
            )
        )
    ).scalar_one_or_none()


def add_media(s: AsyncSession, generation_id: str, refs: list[MediaRef]) -> list[str]:
    """Media rows for ``refs``; returns the provider URLs as kept (data: URIs described)."""
    urls = []
    for i, ref in enumerate(refs):
        kept = describe(ref.url) if is_data_uri(ref.url) else ref.url[:4096]
        urls.append(kept)
        s.add(
            GenerationMedia(
                generation_id=generation_id,
                position=i,
                path=ref.path[:512],
                provider_url=kept,
                content_type=ref.content_type,
                width=ref.width,
                height=ref.height,
                file_name=ref.file_name,
                status="pending",
            )
        )
    return urls


# -- keeping the record in step with its job ---------------------------------------------


async def _generation(s: AsyncSession, job: Job) -> Generation | None:
    if job.generation_id is None:
        return None
    return await s.get(Generation, job.generation_id)


async def _on_start(s: AsyncSession, job: Job) -> None:
    gen = await _generation(s, job)
    if gen is not None and gen.status == "pending":
        gen.status = "processing"
        gen.updated_at = utcnow()


async def _on_item(s: AsyncSession, job: Job, item: JobItem) -> None:
    if job.generation_id is None:
        return
    row = await s.get(GenerationMedia, (job.generation_id, item.position))
    if row is None:
        return
    if item.status in ("stored", "deduplicated"):
        row.status = "stored"
        row.asset_id = item.asset_id
        row.error = None
    elif item.status == "failed":
        row.status = "failed"
        row.error = item.error


async def _on_finish(s: AsyncSession, job: Job, items: list[JobItem]) -> None:
    gen = await _generation(s, job)
    if gen is None:
        return
    now = utcnow()
    gen.status = job.status
    gen.total_size = sum(i.size or 0 for i in items if i.status in ("stored", "deduplicated"))
    gen.is_media_processed = True
    gen.error = job.last_error if job.status != "completed" else None
    gen.completed_at = now
    gen.updated_at = now


register(KIND, KindHooks(on_start=_on_start, on_item=_on_item, on_finish=_on_finish))
