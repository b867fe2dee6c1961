"""Public result types."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

IngestStatus = Literal["stored", "deduplicated", "failed"]


@dataclass
class AssetInfo:
    id: str
    owner: str
    collection: str
    slot: str | None
    visibility: str
    status: str
    bucket: str
    key: str
    size: int
    sha256: str
    content_type: str
    media_kind: str
    width: int | None
    height: int | None
    duration: float | None
    source_url: str | None
    provider: str | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    object_id: str = ""
    media_info: dict[str, Any] | None = None
    version: int | None = None

    @property
    def public(self) -> bool:
        return self.visibility == "public"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("object_id", None)
        d["created_at"] = self.created_at.isoformat()
        d["updated_at"] = self.updated_at.isoformat()
        return d


@dataclass
class IngestResult:
    source: str
    status: IngestStatus
    id: str | None = None
    key: str | None = None
    size: int | None = None
    sha256: str | None = None
    content_type: str | None = None
    url: str | None = None
    error: dict[str, str] | None = None
    asset: AssetInfo | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "source": self.source,
            "id": self.id,
            "status": self.status,
            "key": self.key,
            "size": self.size,
            "sha256": self.sha256,
            "content_type": self.content_type,
            "url": self.url,
        }
        if self.error is not None:
            d["error"] = self.error
        return d


@dataclass
class Page:
    items: list[AssetInfo]
    next_cursor: str | None


@dataclass
class ItemProgress:
    index: int
    source: str
    bytes_done: int
    bytes_total: int | None
    items_done: int
    items_total: int
    status: str  # "downloading" | "stored" | "deduplicated" | "failed"


@dataclass
class SweepReport:
    pending_removed: int = 0
    deleting_removed: int = 0
    unreferenced_removed: int = 0
    orphan_objects_removed: int = 0
    versions_removed: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class UploadInfo:
    """A presigned upload's record (see ``MediaKeep.presign_upload``)."""

    id: str
    owner: str
    collection: str
    slot: str | None
    public: bool
    metadata: dict[str, Any]
    bucket: str
    staging_key: str
    content_type: str
    size: int
    sha256: str | None
    status: str
    expires_at: datetime


@dataclass
class PresignedUpload:
    """Where and how the client uploads; ``asset_id`` is the asset it becomes."""

    asset_id: str
    upload_url: str
    method: str
    headers: dict[str, str]
    expires_at: datetime


@dataclass
class UsageBreakdown:
    assets: int = 0
    bytes: int = 0


@dataclass
class StorageStats:
    """One owner's totals. ``bytes`` counts every asset's size; ``stored_bytes`` what the
    store really holds after dedup; the difference is ``dedup_savings_bytes``."""

    owner: str
    assets: int
    bytes: int
    objects: int
    stored_bytes: int
    dedup_savings_bytes: int
    by_kind: dict[str, UsageBreakdown]
    by_collection: dict[str, UsageBreakdown]
