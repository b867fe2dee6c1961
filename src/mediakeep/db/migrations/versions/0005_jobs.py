"""durable jobs, their items and events; generations and their media

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    json_type = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("options", json_type, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("run_at", TS, nullable=False),
        sa.Column("locked_until", TS),
        sa.Column("lease_token", sa.String(36)),
        sa.Column("worker", sa.String(128)),
        sa.Column("last_error", json_type),
        sa.Column("idempotency_key", sa.String(255)),
        sa.Column("request_hash", sa.String(64)),
        sa.Column("callback_url", sa.String(2048)),
        sa.Column("callback_status", sa.String(16)),
        sa.Column("callback_attempts", sa.Integer, nullable=False),
        sa.Column("callback_next_at", TS),
        sa.Column("callback_last_error", sa.String(500)),
        sa.Column("generation_id", sa.String(36)),
        sa.Column("items_total", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("finished_at", TS),
    )
    op.create_index("ix_jobs_status_run_at", "jobs", ["status", "run_at"])
    op.create_index("ix_jobs_status_locked", "jobs", ["status", "locked_until"])
    op.create_index("ix_jobs_owner_created", "jobs", ["owner", "created_at"])
    # NULL keys never collide, so jobs without a key are not constrained.
    op.create_index("uq_jobs_owner_idempotency", "jobs", ["owner", "idempotency_key"], unique=True)
    op.create_index("ix_jobs_callback_due", "jobs", ["callback_status", "callback_next_at"])

    op.create_table(
        "job_items",
        sa.Column(
            "job_id",
            sa.String(36),
            sa.ForeignKey("jobs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("label", sa.String(512), nullable=False),
        sa.Column("asset_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", json_type),
        sa.Column("size", sa.BigInteger),
        sa.Column("sha256", sa.String(64)),
        sa.Column("content_type", sa.String(127)),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )

    op.create_table(
        "job_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column(
            "job_id",
            sa.String(36),
            sa.ForeignKey("jobs.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("data", json_type, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_job_events_job", "job_events", ["job_id", "id"])

    op.create_table(
        "generations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("collection", sa.String(128), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("endpoint", sa.String(255)),
        sa.Column("request", json_type, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("provider_request_id", sa.String(255)),
        sa.Column("result_metadata", json_type, nullable=False),
        sa.Column("provider_urls", json_type, nullable=False),
        sa.Column("total_size", sa.BigInteger, nullable=False),
        sa.Column("is_media_processed", sa.Boolean, nullable=False),
        sa.Column("error", json_type),
        sa.Column("job_id", sa.String(36)),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("completed_at", TS),
    )
    op.create_index("ix_generations_owner_created", "generations", ["owner", "created_at"])
    op.create_index(
        "uq_generations_request",
        "generations",
        ["provider", "provider_request_id"],
        unique=True,
    )

    op.create_table(
        "generation_media",
        sa.Column(
            "generation_id",
            sa.String(36),
            sa.ForeignKey("generations.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("provider_url", sa.String(4096), nullable=False),
        sa.Column("content_type", sa.String(127)),
        sa.Column("width", sa.Integer),
        sa.Column("height", sa.Integer),
        sa.Column("file_name", sa.String(255)),
        sa.Column("asset_id", sa.String(36), sa.ForeignKey("assets.id", ondelete="SET NULL")),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", json_type),
    )


def downgrade() -> None:
    op.drop_table("generation_media")
    op.drop_table("generations")
    op.drop_table("job_events")
    op.drop_table("job_items")
    op.drop_table("jobs")
