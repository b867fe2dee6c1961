"""slots with versions, the current_assets view, bundles

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    json_type = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    with op.batch_alter_table("assets") as batch:
        batch.add_column(sa.Column("version", sa.Integer))
    # One row per version number in a slot, whoever writes concurrently.
    op.create_index(
        "uq_assets_slot_version", "assets", ["owner", "collection", "slot", "version"], unique=True
    )
    op.create_table(
        "slots",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("collection", sa.String(128), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        # The slot row holds the one current pointer: one column cannot name two versions.
        sa.Column(
            "current_asset_id",
            sa.String(36),
            sa.ForeignKey("assets.id", ondelete="SET NULL"),
        ),
        sa.Column("latest_version", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("uq_slots_name", "slots", ["owner", "collection", "name"], unique=True)
    op.execute(
        """
        CREATE VIEW current_assets AS
        SELECT a.*, s.latest_version AS latest_version
        FROM slots s JOIN assets a ON a.id = s.current_asset_id
        WHERE a.status = 'stored'
        """
    )
    op.create_table(
        "bundles",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("collection", sa.String(128), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column(
            "asset_id",
            sa.String(36),
            sa.ForeignKey("assets.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("manifest", json_type, nullable=False),
        sa.Column("file_count", sa.Integer, nullable=False),
        sa.Column("total_size", sa.BigInteger, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index(
        "uq_bundles_version", "bundles", ["owner", "collection", "name", "version"], unique=True
    )


def downgrade() -> None:
    op.drop_table("bundles")
    op.execute("DROP VIEW current_assets")
    op.drop_table("slots")
    op.drop_index("uq_assets_slot_version", "assets")
    with op.batch_alter_table("assets") as batch:
        batch.drop_column("version")
