"""Tables. An *asset* is what a user stored; an *object* is bytes in the store. Several
assets of one owner may share one object (dedup); owners never share objects.

This module is the whole current schema: `db.migrate` makes an empty database from it
(`create_all`, with the view below), and tests/core/test_schema.py checks that this is
exactly what the migrations make, down to the order of the columns."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    event,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

JSONType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    pass


class StoredObject(Base):
    __tablename__ = "objects"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(128))
    bucket: Mapped[str] = mapped_column(String(63))
    key: Mapped[str] = mapped_column(String(1024))
    # NULL until the bytes are in: pending rows never collide on the dedup constraint.
    sha256: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[int | None] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(127))
    status: Mapped[str] = mapped_column(String(16))  # pending | stored | deleting
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    __table_args__ = (
        Index("uq_objects_bucket_key", "bucket", "key", unique=True),
        Index("uq_objects_owner_bucket_sha", "owner", "bucket", "sha256", unique=True),
        Index("ix_objects_status_created", "status", "created_at"),
    )


class Asset(Base):
    __tablename__ = "assets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(128))
    collection: Mapped[str] = mapped_column(String(128))
    slot: Mapped[str | None] = mapped_column(String(128))
    visibility: Mapped[str] = mapped_column(String(8))  # private | public
    status: Mapped[str] = mapped_column(String(16))  # pending | stored
    object_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("objects.id", ondelete="RESTRICT")
    )
    size: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    content_type: Mapped[str | None] = mapped_column(String(127))
    media_kind: Mapped[str | None] = mapped_column(String(16))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    duration: Mapped[float | None] = mapped_column(Float)
    source_url: Mapped[str | None] = mapped_column(String(4096))
    provider: Mapped[str | None] = mapped_column(String(128))
    provider_metadata: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
    # After the timestamps, where migrations 0003 and 0004 added them: `SELECT *` (and the
    # current_assets view) shows the same columns in the same order on every database.
    # Facts from the bytes: format, frames, colour mode, codecs, fps, placeholder.
    media_info: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    version: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        Index("ix_assets_owner_collection_created", "owner", "collection", "created_at"),
        Index("ix_assets_owner_sha", "owner", "sha256"),
        Index("ix_assets_status_created", "status", "created_at"),
        Index("ix_assets_object", "object_id"),
        Index("uq_assets_slot_version", "owner", "collection", "slot", "version", unique=True),
        # Queries into provider metadata (docs/DATABASE.md); SQLite has no such index.
        Index("ix_assets_metadata_gin", "provider_metadata", postgresql_using="gin").ddl_if(
            dialect="postgresql"
        ),
    )


class Upload(Base):
    """A presigned upload: the client puts bytes at ``staging_key`` itself, then asks us to
    complete it, which runs them through the pipeline as asset ``id``."""

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(128))
    collection: Mapped[str] = mapped_column(String(128))
    slot: Mapped[str | None] = mapped_column(String(128))
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    provider_metadata: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    bucket: Mapped[str] = mapped_column(String(63))
    staging_key: Mapped[str] = mapped_column(String(1024))
    content_type: Mapped[str] = mapped_column(String(127))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # pending | completing | completed | rejected
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    __table_args__ = (
        Index("uq_uploads_bucket_staging_key", "bucket", "staging_key", unique=True),
        Index("ix_uploads_expires", "expires_at"),
        Index("ix_uploads_owner", "owner"),
    )


class Variant(Base):
    """A derived rendition (thumbnail, poster frame) of an object's bytes: shared by every
    asset that shares the object, and gone with it."""

    __tablename__ = "variants"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    object_id: Mapped[str] = mapped_column(String(36), ForeignKey("objects.id", ondelete="CASCADE"))
    preset: Mapped[str] = mapped_column(String(64))
    bucket: Mapped[str] = mapped_column(String(63))
    key: Mapped[str] = mapped_column(String(1024))
    status: Mapped[str] = mapped_column(String(16))  # stored | failed
    content_type: Mapped[str | None] = mapped_column(String(127))
    size: Mapped[int | None] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    sha256: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (Index("uq_variants_object_preset", "object_id", "preset", unique=True),)


class Slot(Base):
    """(owner, collection, name) with its one current version."""

    __tablename__ = "slots"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(128))
    collection: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(128))
    current_asset_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("assets.id", ondelete="SET NULL")
    )
    latest_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    __table_args__ = (Index("uq_slots_name", "owner", "collection", "name", unique=True),)


class Bundle(Base):
    """Many files stored as one archive asset, with their manifest."""

    __tablename__ = "bundles"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(128))
    collection: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    asset_id: Mapped[str] = mapped_column(String(36), ForeignKey("assets.id", ondelete="CASCADE"))
    manifest: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    file_count: Mapped[int] = mapped_column(Integer)
    total_size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (
        Index("uq_bundles_version", "owner", "collection", "name", "version", unique=True),
    )


# -- durable jobs, generations (see docs/JOBS.md) --------------------------------------------

# SQLite only autoincrements an INTEGER PRIMARY KEY; PostgreSQL gets a bigint identity.
EventId = BigInteger().with_variant(Integer(), "sqlite")


class Job(Base):
    """Work accepted for later: recorded before the 202 answer, claimed by one worker at a
    time under a lease (``lease_token`` until ``locked_until``)."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))  # ingest | generation
    # queued | running | completed | partial | failed
    status: Mapped[str] = mapped_column(String(16))
    options: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    run_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_token: Mapped[str | None] = mapped_column(String(36))
    worker: Mapped[str | None] = mapped_column(String(128))
    last_error: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    callback_url: Mapped[str | None] = mapped_column(String(2048))
    # pending | delivered | failed; NULL without a callback
    callback_status: Mapped[str | None] = mapped_column(String(16))
    callback_attempts: Mapped[int] = mapped_column(Integer, default=0)
    callback_next_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    callback_last_error: Mapped[str | None] = mapped_column(String(500))
    generation_id: Mapped[str | None] = mapped_column(String(36))
    items_total: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_jobs_status_run_at", "status", "run_at"),
        Index("ix_jobs_status_locked", "status", "locked_until"),
        Index("ix_jobs_owner_created", "owner", "created_at"),
        Index("uq_jobs_owner_idempotency", "owner", "idempotency_key", unique=True),
        Index("ix_jobs_callback_due", "callback_status", "callback_next_at"),
    )


class JobItem(Base):
    """One source of a job. ``asset_id`` is fixed when the job is accepted, so whichever
    worker stores the item stores it under that id, and only once."""

    __tablename__ = "job_items"

    job_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    # A URL or a data: URI (cleared to its label once stored).
    source: Mapped[str] = mapped_column(Text)
    label: Mapped[str] = mapped_column(String(512))
    asset_id: Mapped[str] = mapped_column(String(36))
    status: Mapped[str] = mapped_column(String(16))  # pending | stored | deduplicated | failed
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    size: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    content_type: Mapped[str | None] = mapped_column(String(127))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class JobEvent(Base):
    """A job's progress, kept in the database so any server can stream it (SSE)."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(36), ForeignKey("jobs.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (Index("ix_job_events_job", "job_id", "id"),)


class Generation(Base):
    """The provider call that produced some media: its request, outcome and files."""

    __tablename__ = "generations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(128))
    collection: Mapped[str] = mapped_column(String(128))
    provider: Mapped[str] = mapped_column(String(64))
    endpoint: Mapped[str | None] = mapped_column(String(255))
    request: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # pending | processing | completed | partial | failed
    status: Mapped[str] = mapped_column(String(16))
    provider_request_id: Mapped[str | None] = mapped_column(String(255))
    # Everything in the result that is not a media file: seed, timings, ...
    result_metadata: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    provider_urls: Mapped[list[str]] = mapped_column(JSONType, default=list)
    total_size: Mapped[int] = mapped_column(BigInteger, default=0)
    is_media_processed: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    job_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_generations_owner_created", "owner", "created_at"),
        # A provider request becomes one generation, however often its webhook arrives.
        Index("uq_generations_request", "provider", "provider_request_id", unique=True),
    )


class GenerationMedia(Base):
    """One media file of a generation, in the provider's order."""

    __tablename__ = "generation_media"

    generation_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("generations.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(String(512))  # where in the result, as a JSON pointer
    provider_url: Mapped[str] = mapped_column(String(4096))  # data: URIs abbreviated
    content_type: Mapped[str | None] = mapped_column(String(127))  # as the provider said
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    file_name: Mapped[str | None] = mapped_column(String(255))
    asset_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("assets.id", ondelete="SET NULL")
    )
    status: Mapped[str] = mapped_column(String(16))  # pending | stored | failed | removed
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


# Each slot's current version, for teams who query the database (docs/DATABASE.md). Made
# after the tables it reads, and dropped before them, whenever the metadata is.
CURRENT_ASSETS_VIEW = """
CREATE VIEW current_assets AS
SELECT a.*, s.latest_version AS latest_version
FROM slots s JOIN assets a ON a.id = s.current_asset_id
WHERE a.status = 'stored'
"""


@event.listens_for(Base.metadata, "after_create")
def _create_views(_metadata: MetaData, conn: Connection, **_kw: Any) -> None:
    conn.exec_driver_sql(CURRENT_ASSETS_VIEW)


@event.listens_for(Base.metadata, "before_drop")
def _drop_views(_metadata: MetaData, conn: Connection, **_kw: Any) -> None:
    conn.exec_driver_sql("DROP VIEW IF EXISTS current_assets")
