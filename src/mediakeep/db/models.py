"""Tables. An *asset* is what a user stored; an *object* is bytes in the store. Several
assets of one owner may share one object (dedup); owners never share objects."""

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
    String,
)
from sqlalchemy.dialects.postgresql import JSONB
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
    # Facts from the bytes: format, frames, colour mode, codecs, fps, placeholder.
    media_info: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    version: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    __table_args__ = (
        Index("ix_assets_owner_collection_created", "owner", "collection", "created_at"),
        Index("ix_assets_owner_sha", "owner", "sha256"),
        Index("ix_assets_status_created", "status", "created_at"),
        Index("ix_assets_object", "object_id"),
        Index("uq_assets_slot_version", "owner", "collection", "slot", "version", unique=True),
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
