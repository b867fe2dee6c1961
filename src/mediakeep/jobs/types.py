"""What the jobs part of the library hands back."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

TERMINAL = frozenset({"completed", "partial", "failed"})
# Events after which a job's event stream has nothing more to say.
FINAL_EVENTS = frozenset({"done", "failed"})


def aware(value: datetime) -> datetime:
    # SQLite hands timestamps back without a zone; everything we write is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else aware(value).isoformat()


@dataclass
class JobItemInfo:
    index: int
    source: str
    status: str  # pending | stored | deduplicated | failed
    asset_id: str | None
    size: int | None = None
    sha256: str | None = None
    content_type: str | None = None
    error: dict[str, Any] | None = None
    attempts: int = 0

    @property
    def ok(self) -> bool:
        return self.status in ("stored", "deduplicated")

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "source": self.source,
            "status": self.status,
            "asset_id": self.asset_id,
            "size": self.size,
            "sha256": self.sha256,
            "content_type": self.content_type,
            "error": self.error,
            "attempts": self.attempts,
        }


@dataclass
class CallbackInfo:
    url: str
    status: str  # pending | delivered | failed
    attempts: int
    last_error: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "status": self.status,
            "attempts": self.attempts,
            "last_error": self.last_error,
        }


@dataclass
class JobInfo:
    id: str
    owner: str
    kind: str
    status: str
    attempts: int
    max_attempts: int
    items: list[JobItemInfo]
    last_error: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    run_at: datetime
    options: dict[str, Any] = field(default_factory=dict)
    generation_id: str | None = None
    idempotency_key: str | None = None
    callback: CallbackInfo | None = None
    # True when an Idempotency-Key found this job instead of creating it.
    replayed: bool = False

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def counts(self) -> dict[str, int]:
        return {
            "total": len(self.items),
            "stored": sum(1 for i in self.items if i.status == "stored"),
            "deduplicated": sum(1 for i in self.items if i.status == "deduplicated"),
            "failed": sum(1 for i in self.items if i.status == "failed"),
            "pending": sum(1 for i in self.items if i.status == "pending"),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "owner": self.owner,
            "kind": self.kind,
            "status": self.status,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "items": [i.to_dict() for i in self.items],
            "counts": self.counts(),
            "last_error": self.last_error,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "finished_at": _iso(self.finished_at),
            "next_attempt_at": None if self.terminal else _iso(self.run_at),
            "generation_id": self.generation_id,
            "idempotency_key": self.idempotency_key,
            "callback": self.callback.to_dict() if self.callback else None,
        }


@dataclass
class JobEventInfo:
    id: int
    job_id: str
    type: str
    data: dict[str, Any]
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "job_id": self.job_id,
            "type": self.type,
            "data": self.data,
            "created_at": _iso(self.created_at),
        }

    @property
    def final(self) -> bool:
        # Item failures carry an index; only the job's own "failed" ends the stream.
        return self.type in FINAL_EVENTS and "index" not in self.data

    def sse(self) -> str:
        """The event as a Server-Sent Events frame (``id`` resumes via Last-Event-ID)."""
        payload = json.dumps({**self.data, "job_id": self.job_id, "at": _iso(self.created_at)})
        return f"id: {self.id}\nevent: {self.type}\ndata: {payload}\n\n"
