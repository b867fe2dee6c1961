"""assets and objects

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    json_type = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    op.create_table(
        "objects",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("bucket", sa.String(63), nullable=False),
        sa.Column("key", sa.String(1024), nullable=False),
        sa.Column("sha256", sa.String(64)),
        sa.Column("size", sa.BigInteger),
        sa.Column("content_type", sa.String(127), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("uq_objects_bucket_key", "objects", ["bucket", "key"], unique=True)
    op.create_index(
        "uq_objects_owner_bucket_sha", "objects", ["owner", "bucket", "sha256"], unique=True
    )
    op.create_index("ix_objects_status_created", "objects", ["status", "created_at"])

    op.create_table(
        "assets",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("collection", sa.String(128), nullable=False),
        sa.Column("slot", sa.String(128)),
        sa.Column("visibility", sa.String(8), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("object_id", sa.String(36), sa.ForeignKey("objects.id", ondelete="RESTRICT")),
        sa.Column("size", sa.BigInteger),
        sa.Column("sha256", sa.String(64)),
        sa.Column("content_type", sa.String(127)),
        sa.Column("media_kind", sa.String(16)),
        sa.Column("width", sa.Integer),
        sa.Column("height", sa.Integer),
        sa.Column("duration", sa.Float),
        sa.Column("source_url", sa.String(4096)),
        sa.Column("provider", sa.String(128)),
        sa.Column("provider_metadata", json_type, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index(
        "ix_assets_owner_collection_created", "assets", ["owner", "collection", "created_at"]
    )
    op.create_index("ix_assets_owner_sha", "assets", ["owner", "sha256"])
    op.create_index("ix_assets_status_created", "assets", ["status", "created_at"])
    op.create_index("ix_assets_object", "assets", ["object_id"])
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            "ix_assets_metadata_gin",
            "assets",
            ["provider_metadata"],
            postgresql_using="gin",
        )


def downgrade() -> None:
    op.drop_table("assets")
    op.drop_table("objects")
