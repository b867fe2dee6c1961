"""Bodies of the jobs, generations, webhooks and persist-json routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ..jobs.types import JobInfo
from .schemas import Metadata, Name

JobStatus = Literal["queued", "running", "completed", "partial", "failed"]
ItemStatus = Literal["pending", "stored", "deduplicated", "failed"]
Url = Annotated[str, StringConstraints(min_length=1, max_length=2048)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JobError(BaseModel):
    code: str
    message: str


class JobItemOut(BaseModel):
    index: int
    source: str = Field(description="The URL (data: URIs are described, not repeated).")
    status: ItemStatus
    asset_id: str | None = Field(description="Set once the item is stored.")
    content_url: str | None = Field(description="The permanent link, once stored.")
    size: int | None
    sha256: str | None
    content_type: str | None
    error: JobError | None
    attempts: int


class JobCounts(BaseModel):
    total: int
    stored: int
    deduplicated: int
    failed: int
    pending: int


class CallbackOut(BaseModel):
    url: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_error: str | None


class JobOut(BaseModel):
    id: str
    owner: str
    kind: Literal["ingest", "generation"]
    status: JobStatus = Field(
        description="queued (waiting, or waiting to retry) → running → completed, partial "
        "(some items failed for good) or failed."
    )
    attempts: int
    max_attempts: int
    items: list[JobItemOut]
    counts: JobCounts
    last_error: JobError | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    next_attempt_at: datetime | None = Field(description="When a waiting job runs next.")
    generation_id: str | None
    idempotency_key: str | None
    callback: CallbackOut | None
    status_url: str
    events_url: str = Field(description="Server-Sent Events with the job's progress.")

    @classmethod
    def of(cls, data: dict[str, Any], base_url: str) -> JobOut:
        base = base_url.rstrip("/")
        return cls(
            **data,
            status_url=f"{base}/v1/jobs/{data['id']}",
            events_url=f"{base}/v1/jobs/{data['id']}/events",
        )


def job_out(keep: Any, job: JobInfo) -> JobOut:
    return JobOut.of(keep.job_payload(job), keep.settings.base_url)


class JobList(BaseModel):
    items: list[JobOut]


# -- generations -----------------------------------------------------------------------


class GenerationCreate(_Strict):
    provider: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        examples=["fal"]
    )
    endpoint: Annotated[str, StringConstraints(max_length=255)] | None = Field(
        default=None, examples=["fal-ai/flux/dev"], description="The model or endpoint called."
    )
    result: dict[str, Any] | None = Field(
        default=None,
        description="The provider's result as it came (e.g. fal's `images[].url`, "
        "`video.url`, data: URIs in sync mode). Without it the generation is recorded "
        "`pending`, for a webhook to complete (then `request_id` is required).",
    )
    request: dict[str, Any] = Field(
        default_factory=dict, description="The request sent: prompt and parameters."
    )
    request_id: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = Field(
        default=None, description="The provider's request id (one generation per id)."
    )
    collection: Name | None = None
    public: bool = False
    run_async: bool = Field(
        default=False,
        alias="async",
        description="Answer 202 at once; a worker stores the media (see the job).",
    )
    callback_url: Url | None = Field(
        default=None, description="POSTed the job's final result, signed (see docs/JOBS.md)."
    )
    owner: Name | None = Field(default=None, description="Service role only: the owner to act for.")


class GenerationMediaOut(BaseModel):
    position: int
    path: str = Field(description="Where in the result, as a JSON pointer.")
    provider_url: str = Field(description="The provider's original URL, kept for debugging.")
    content_type: str | None
    width: int | None
    height: int | None
    file_name: str | None
    asset_id: str | None
    status: Literal["pending", "stored", "failed", "removed"]
    error: JobError | None


class GenerationOut(BaseModel):
    id: str
    owner: str
    collection: str
    provider: str
    endpoint: str | None
    request: dict[str, Any]
    status: Literal["pending", "processing", "completed", "partial", "failed"]
    request_id: str | None
    metadata: dict[str, Any] = Field(description="Seed, timings and the result's other fields.")
    provider_urls: list[str]
    total_size: int
    is_media_processed: bool
    error: JobError | None
    job_id: str | None
    media: list[GenerationMediaOut]
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    job_url: str | None


class GenerationList(BaseModel):
    items: list[GenerationOut]


class MediaUrlOut(BaseModel):
    position: int
    status: Literal["pending", "stored", "failed", "removed"]
    source: Literal["store", "provider"] = Field(
        description="`store`: our copy; `provider`: not stored (yet), the original URL."
    )
    asset_id: str | None
    url: str | None = Field(description="Null when there is nothing to link to.")
    expires_at: datetime | None
    size: int | None
    content_type: str | None
    width: int | None
    height: int | None


class MediaUrlsOut(BaseModel):
    generation_id: str
    items: list[MediaUrlOut]


class ValidationProblem(BaseModel):
    position: int
    asset_id: str | None
    problem: Literal["asset_missing", "object_missing", "size_mismatch", "sha256_mismatch"]
    expected: int | str | None = None
    actual: int | str | None = None


class ValidationOut(BaseModel):
    generation_id: str
    valid: bool
    checked: int
    problems: list[ValidationProblem]


class CleanupOut(BaseModel):
    generation_id: str
    removed: int


# -- webhooks --------------------------------------------------------------------------


class TicketRequest(_Strict):
    collection: Name | None = None
    public: bool = False
    endpoint: Annotated[str, StringConstraints(max_length=255)] | None = None
    expires_in: int | None = Field(default=None, ge=1, le=366 * 24 * 3600)
    owner: Name | None = Field(default=None, description="Service role only: the owner to act for.")


class TicketOut(BaseModel):
    ticket: str
    webhook_url: str = Field(description="Give this to fal as the request's webhook URL.")
    expires_at: datetime
    owner: str
    collection: str | None


class WebhookReceipt(BaseModel):
    generation_id: str
    job_id: str | None
    status: str
    replayed: bool = Field(description="The request was already recorded: nothing new.")


# -- persist-json ----------------------------------------------------------------------


class PersistRequest(_Strict):
    document: Any = Field(description="Any JSON value.")
    collection: Name | None = None
    public: bool = False
    provider: Annotated[str, StringConstraints(max_length=128)] | None = None
    metadata: Metadata = Field(default_factory=dict)
    hosts: list[Annotated[str, StringConstraints(min_length=1, max_length=255)]] | None = Field(
        default=None, max_length=100, description="Replaces MEDIAKEEP_PERSIST_HOSTS."
    )
    extensions: list[Annotated[str, StringConstraints(min_length=1, max_length=16)]] | None = Field(
        default=None, max_length=100, description="Replaces MEDIAKEEP_PERSIST_EXTENSIONS."
    )
    owner: Name | None = Field(default=None, description="Service role only: the owner to act for.")


class PersistReplaced(BaseModel):
    path: str = Field(description="JSON pointer to the string that was replaced.")
    url: str
    asset_id: str
    content_url: str
    status: Literal["stored", "deduplicated"]


class PersistFailed(BaseModel):
    path: str
    url: str = Field(description="Left in the document as it was.")
    error: JobError | None


class PersistOut(BaseModel):
    document: Any
    replaced: list[PersistReplaced]
    failed: list[PersistFailed]
