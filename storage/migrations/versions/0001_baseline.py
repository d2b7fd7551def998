"""The schema as it stood before versioned migrations.

A database written by an earlier release has these tables (created with CREATE TABLE IF NOT
EXISTS) but no alembic_version: only what is missing is created, so its rows stay as they are.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    existing = set(inspector.get_table_names())
    if "conversations" not in existing:
        op.create_table(
            "conversations",
            sa.Column("team_id", sa.Text(), nullable=False),
            sa.Column("channel_id", sa.Text(), nullable=False),
            sa.Column("thread_ts", sa.Text(), nullable=False),
            sa.Column("user_id", sa.Text(), nullable=False),
            sa.Column("state", sa.Text(), nullable=False),
            sa.Column("model", sa.Text(), nullable=False),
            sa.Column("history", sa.Text(), nullable=False, server_default="[]"),
            sa.Column("report", sa.Text()),
            sa.Column("refs", sa.Text(), nullable=False, server_default="[]"),
            sa.Column("progress_ts", sa.Text()),
            sa.Column("options", sa.Text(), nullable=False, server_default="{}"),
            sa.Column("created_at", sa.Float(), nullable=False),
            sa.Column("updated_at", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("team_id", "channel_id", "thread_ts"),
        )
        op.create_index("conversations_state", "conversations", ["state"])
    elif "options" not in {c["name"] for c in inspector.get_columns("conversations")}:
        # Databases from before per-request options.
        op.add_column(
            "conversations",
            sa.Column("options", sa.Text(), nullable=False, server_default="{}"),
        )
    if "usage" not in existing:
        op.create_table(
            "usage",
            sa.Column(
                "id",
                sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                primary_key=True,
                autoincrement=True,
            ),
            sa.Column("team_id", sa.Text(), nullable=False),
            sa.Column("user_id", sa.Text(), nullable=False),
            sa.Column("channel_id", sa.Text(), nullable=False),
            sa.Column("thread_ts", sa.Text(), nullable=False),
            sa.Column("model", sa.Text(), nullable=False),
            sa.Column("kind", sa.Text(), nullable=False),
            sa.Column("input_tokens", sa.Integer(), nullable=False),
            sa.Column("output_tokens", sa.Integer(), nullable=False),
            sa.Column("reasoning_tokens", sa.Integer(), nullable=False, server_default="0"),
            sa.Column("request_id", sa.Text(), nullable=False, server_default=""),
            sa.Column("cost_usd", sa.Float()),
            sa.Column("created_at", sa.Float(), nullable=False),
        )
        op.create_index("usage_team_time", "usage", ["team_id", "created_at"])
    if "claims" not in existing:
        op.create_table(
            "claims",
            sa.Column("key", sa.Text(), primary_key=True),
            sa.Column("claimed_at", sa.Float(), nullable=False),
        )
    if "answers" not in existing:
        op.create_table(
            "answers",
            sa.Column("id", sa.Text(), primary_key=True),
            sa.Column("team_id", sa.Text(), nullable=False),
            sa.Column("user_id", sa.Text(), nullable=False),
            sa.Column("channel_id", sa.Text(), nullable=False),
            sa.Column("thread_ts", sa.Text(), nullable=False, server_default=""),
            sa.Column("kind", sa.Text(), nullable=False),
            sa.Column("model", sa.Text(), nullable=False),
            sa.Column("question", sa.Text(), nullable=False),
            sa.Column("answer", sa.Text(), nullable=False),
            sa.Column("reasoning", sa.Text(), nullable=False, server_default=""),
            sa.Column("created_at", sa.Float(), nullable=False),
        )
        op.create_index(
            "answers_thread", "answers", ["team_id", "channel_id", "thread_ts", "created_at"]
        )
    if "workspace_settings" not in existing:
        op.create_table(
            "workspace_settings",
            sa.Column("team_id", sa.Text(), primary_key=True),
            sa.Column("model", sa.Text()),
            sa.Column("output_format", sa.Text()),
            sa.Column("clarify", sa.Integer()),
            sa.Column("mcp_label", sa.Text(), nullable=False, server_default=""),
            sa.Column("mcp_url", sa.Text(), nullable=False, server_default=""),
            sa.Column("mcp_allowed_tools", sa.Text(), nullable=False, server_default="[]"),
            sa.Column("mcp_token_sealed", sa.Text()),
            sa.Column("updated_by", sa.Text(), nullable=False, server_default=""),
            sa.Column("updated_at", sa.Float(), nullable=False),
        )
