"""Request and response bodies of the HTTP API (these are what /docs shows)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from ..keep import MAX_EXPIRES
from ..models import AssetInfo, IngestResult

# The same rule as pipeline.keys.validate_name, written without look-ahead so JSON Schema
# tools and the Rust regex engine both understand it: no "..", first character alphanumeric.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_@+=-]*(\.[A-Za-z0-9_@+=-]+)*\.?$"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=128)]
MAX_METADATA_BYTES = 16 * 1024
MAX_SIGNED_URLS = 1000


def _check_json_value(value: Any, depth: int = 0) -> None:
    if depth > 32:
        raise ValueError("metadata is nested too deeply")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("metadata strings cannot contain NUL characters")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("metadata numbers must be finite")
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_json_value(k, depth + 1)
            _check_json_value(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _check_json_value(v, depth + 1)


def check_metadata(value: dict[str, Any]) -> dict[str, Any]:
    # Every database we run on must be able to store it: PostgreSQL's JSONB refuses NULs
    # and NaN, and a bounded size keeps rows small.
    _check_json_value(value)
    if len(json.dumps(value, ensure_ascii=False).encode()) > MAX_METADATA_BYTES:
        raise ValueError(f"metadata is larger than {MAX_METADATA_BYTES} bytes as JSON")
    return value


Metadata = Annotated[
    dict[str, Any],
    AfterValidator(check_metadata),
    Field(
        description="Free-form JSON object kept with the asset "
        f"(at most {MAX_METADATA_BYTES} bytes)."
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- problems --------------------------------------------------------------------------


class ProblemIssue(BaseModel):
    loc: list[str | int]
    msg: str


class Problem(BaseModel):
    """An RFC 9457 problem. Branch on ``code``: it is stable; ``detail`` is for people."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["https://mediakeep.dev/problems/not_found"])
    title: str = Field(examples=["Not Found"])
    status: int = Field(examples=[404])
    code: str = Field(examples=["not_found"])
    detail: str = Field(examples=["no such asset"])
    errors: list[ProblemIssue] | None = Field(
        default=None, description="Which parts of the request were invalid (validation_error)."
    )
    retry_after: int | None = Field(default=None, description="Seconds to wait (rate_limited).")


# -- assets ----------------------------------------------------------------------------


class VariantLink(BaseModel):
    url: str = Field(description="Signed (private assets) or public URL of the variant.")
    width: int | None
    height: int | None


class AssetOut(BaseModel):
    id: str
    owner: str
    collection: str
    slot: str | None
    visibility: Literal["private", "public"]
    public: bool
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
    content_url: str = Field(
        description="The permanent link: it never expires; save this one in your own data."
    )
    media_info: dict[str, Any] | None = Field(
        default=None,
        description="What processing learnt: format, frames, mode, codecs, and `placeholder` "
        "(a tiny data: URL to show while the image loads).",
    )
    version: int | None = Field(default=None, description="Its version in its slot, if any.")
    variants: dict[str, VariantLink] = Field(
        default_factory=dict,
        description="Stored variants by preset name (`/variants` also lists failed ones).",
    )

    @classmethod
    def of(
        cls, a: AssetInfo, base_url: str, variants: dict[str, VariantLink] | None = None
    ) -> AssetOut:
        return cls(
            id=a.id,
            owner=a.owner,
            collection=a.collection,
            slot=a.slot,
            visibility="public" if a.public else "private",
            public=a.public,
            key=a.key,
            size=a.size,
            sha256=a.sha256,
            content_type=a.content_type,
            media_kind=a.media_kind,
            width=a.width,
            height=a.height,
            duration=a.duration,
            source_url=a.source_url,
            provider=a.provider,
            metadata=a.metadata,
            created_at=utc(a.created_at),
            updated_at=utc(a.updated_at),
            content_url=content_url(base_url, a.id),
            media_info=a.media_info,
            version=a.version,
            variants=variants or {},
        )


def utc(value: datetime) -> datetime:
    # SQLite hands back times without a zone; they are UTC, and RFC 3339 wants it said.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def content_url(base_url: str, asset_id: str) -> str:
    return f"{base_url.rstrip('/')}/v1/assets/{asset_id}/content"


class AssetPage(BaseModel):
    items: list[AssetOut]
    next_cursor: str | None = Field(
        description="Pass as ``cursor`` for the next page; null only when there is none."
    )


class UrlOut(BaseModel):
    id: str
    url: str
    public: bool
    expires_at: datetime | None = Field(description="Null for public URLs, which do not expire.")


class SignedUrlsRequest(_Strict):
    ids: list[UUID] = Field(min_length=1, max_length=MAX_SIGNED_URLS)
    expires_in: int | None = Field(default=None, ge=1, le=MAX_EXPIRES)


class ItemError(BaseModel):
    code: str
    message: str
    status: int = Field(description="The HTTP status this error would have on its own.")


class SignedUrlItem(BaseModel):
    id: str
    status: int = Field(description="200, or 404 for an id that is unknown (or not yours).")
    url: str | None = None
    public: bool | None = None
    expires_at: datetime | None = None
    error: ItemError | None = None


class SignedUrlsResponse(BaseModel):
    items: list[SignedUrlItem] = Field(description="One per distinct id, in request order.")
    found: int
    not_found: int


class VisibilityRequest(_Strict):
    public: bool


class VisibilityResponse(BaseModel):
    asset: AssetOut
    url: str
    expires_at: datetime | None


class Usage(BaseModel):
    assets: int
    bytes: int


class StorageStatsOut(BaseModel):
    owner: str
    assets: int
    bytes: int = Field(description="Sum of every asset's size.")
    objects: int = Field(description="Objects in the store (deduplicated).")
    stored_bytes: int = Field(description="Bytes the store really holds.")
    dedup_savings_bytes: int
    by_kind: dict[str, Usage]
    by_collection: dict[str, Usage]


# -- ingest and uploads ----------------------------------------------------------------


class IngestRequest(_Strict):
    urls: list[Annotated[str, StringConstraints(min_length=1, max_length=4096)]] = Field(
        min_length=1, max_length=1000, description="http(s) URLs to download and keep."
    )
    collection: Name | None = None
    slot: Name | None = None
    public: bool = False
    provider: Annotated[str, StringConstraints(max_length=128)] | None = None
    metadata: Metadata = Field(default_factory=dict)
    owner: Name | None = Field(default=None, description="Service role only: the owner to act for.")
    run_async: bool = Field(
        default=False,
        alias="async",
        description="Answer 202 at once with a durable job (recorded before the answer); "
        "workers store the URLs. See /v1/jobs/{id} and its events.",
    )
    callback_url: Annotated[str, StringConstraints(min_length=1, max_length=2048)] | None = Field(
        default=None,
        description="With async: POSTed the job's final result, signed (see docs/JOBS.md).",
    )


class IngestItem(BaseModel):
    """One input's outcome: the same fields as ``mediakeep ingest --json``."""

    source: str
    status: Literal["stored", "deduplicated", "failed"]
    id: str | None = None
    key: str | None = None
    size: int | None = None
    sha256: str | None = None
    content_type: str | None = None
    url: str | None = None
    content_url: str | None = None
    error: ItemError | None = None

    @classmethod
    def of(cls, r: IngestResult, base_url: str, status_of: Any) -> IngestItem:
        error = None
        if r.error is not None:
            code = r.error.get("code", "internal_error")
            error = ItemError(code=code, message=r.error.get("message", ""), status=status_of(code))
        return cls(
            source=r.source,
            status=r.status,
            id=r.id,
            key=r.key,
            size=r.size,
            sha256=r.sha256,
            content_type=r.content_type,
            url=r.url,
            content_url=None if r.id is None else content_url(base_url, r.id),
            error=error,
        )


class IngestResponse(BaseModel):
    results: list[IngestItem] = Field(description="One per URL, in request order.")
    stored: int
    deduplicated: int
    failed: int


class PresignRequest(_Strict):
    content_type: Annotated[str, StringConstraints(min_length=1, max_length=127)] = Field(
        description="The type the bytes will be (checked against the bytes on complete)."
    )
    size: int = Field(ge=1, le=2**53, description="Exact size in bytes (checked on complete).")
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] | None = Field(
        default=None, description="Optional: the bytes' SHA-256, checked on complete."
    )
    collection: Name | None = None
    slot: Name | None = None
    public: bool = False
    metadata: Metadata = Field(default_factory=dict)
    owner: Name | None = Field(default=None, description="Service role only: the owner to act for.")


class PresignResponse(BaseModel):
    asset_id: str = Field(description="The id the asset will have once completed.")
    upload_url: str
    method: str
    headers: dict[str, str] = Field(description="Send these headers with the upload.")
    expires_at: datetime
    complete_url: str


class Status(BaseModel):
    status: str
