"""Feedback on reports and answers, and how a workspace gets its reports.

- feedback: one row per person and message carrying Slack's feedback buttons (a report
  summary or an answer); a second press replaces the first. The model, the kind (report,
  answer, follow_up) and the workspace are kept for the Home tab's share of 👍.
- workspace_settings.report_delivery: canvas_and_file, canvas or file; NULL reads as
  canvas_and_file.

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("team_id", sa.Text(), nullable=False),
        sa.Column("channel_id", sa.Text(), nullable=False),
        sa.Column("message_ts", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("positive", sa.Integer(), nullable=False),  # 1 👍, 0 👎
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("team_id", "channel_id", "message_ts", "user_id"),
    )
    op.create_index("feedback_by_time", "feedback", ["team_id", "updated_at"])
    op.add_column("workspace_settings", sa.Column("report_delivery", sa.Text()))


def downgrade() -> None:
    with op.batch_alter_table("workspace_settings") as batch:
        batch.drop_column("report_delivery")
    op.drop_index("feedback_by_time", table_name="feedback")
    op.drop_table("feedback")
