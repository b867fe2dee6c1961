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

    @property
    def public(self) -> bool:
        return self.visibility == "public"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
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

    def to_dict(self) -> dict[str, int]:
        return asdict(self)
