"""media facts and variants

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    json_type = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    with op.batch_alter_table("assets") as batch:
        batch.add_column(sa.Column("media_info", json_type))
    op.create_table(
        "variants",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "object_id",
            sa.String(36),
            sa.ForeignKey("objects.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("preset", sa.String(64), nullable=False),
        sa.Column("bucket", sa.String(63), nullable=False),
        sa.Column("key", sa.String(1024), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("content_type", sa.String(127)),
        sa.Column("size", sa.BigInteger),
        sa.Column("width", sa.Integer),
        sa.Column("height", sa.Integer),
        sa.Column("sha256", sa.String(64)),
        sa.Column("error", sa.String(500)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("uq_variants_object_preset", "variants", ["object_id", "preset"], unique=True)


def downgrade() -> None:
    op.drop_table("variants")
    with op.batch_alter_table("assets") as batch:
        batch.drop_column("media_info")
