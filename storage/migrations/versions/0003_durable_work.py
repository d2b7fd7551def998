"""Durable work: an inbox of accepted Slack events, process heartbeats, run ownership, usage of
calls still streaming, questions kept while research runs.

- inbox: every event the bot acknowledges, recorded before the ack; done_at once handled.
  Redeliveries are deduplicated on (team_id, event_id); rows left by a dead process are
  handled again by a live one.
- processes: one row per running bot process, its heartbeat renewed every few seconds. Work
  owned by a process whose heartbeat is older than RUN_LEASE_SECONDS is taken over.
- conversations.owner / resumes: the process streaming the research, and how many times the run
  was restarted automatically after an interruption.
- inflight_usage: the last cumulative usage of each model call still streaming, flushed with the
  heartbeat; moved into the ledger if the call is cut.
- usage.call_id: each call is recorded once, whichever path records it.
- conversations.queued_at / not_before: the research queue (admission limits, throttling).
- inflight_usage.reserved_tokens: a call's estimate, counted against the workspace's budget
  until its real usage is recorded, so a burst cannot overshoot the budget.
- kept_questions: questions asked in a thread while its research ran, answered after the report.
- pacing: each workspace's chat.update token bucket, shared by the processes of a fleet.
- claims.holder: the event that claimed a message, so a replay of that same event passes.
- conversations.owed: the clarifying question or report the thread is owed until Slack has
  accepted it (the outbox); redelivered after a crash without posting anything twice.
- conversations.applied: the last messages applied to the conversation, so a replayed event
  is not applied twice.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbox",
        sa.Column("team_id", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("done_at", sa.Float()),
        sa.PrimaryKeyConstraint("team_id", "event_id"),
    )
    op.create_index("inbox_pending", "inbox", ["done_at", "owner"])
    op.create_table(
        "processes",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("heartbeat_at", sa.Float(), nullable=False),
        sa.Column("draining", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column("conversations", sa.Column("owner", sa.Text()))
    op.add_column(
        "conversations",
        sa.Column("resumes", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_table(
        "inflight_usage",
        sa.Column("call_id", sa.Text(), primary_key=True),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("team_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("channel_id", sa.Text(), nullable=False),
        sa.Column("thread_ts", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("reasoning_tokens", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Text(), nullable=False),
        sa.Column("cost_nanousd", sa.BigInteger()),
        sa.Column("reserved_tokens", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    op.create_index("inflight_usage_team", "inflight_usage", ["team_id"])
    with op.batch_alter_table("usage") as batch:
        batch.add_column(sa.Column("call_id", sa.Text()))
    op.create_index("usage_call", "usage", ["call_id"], unique=True)
    op.create_table(
        "kept_questions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("team_id", sa.Text(), nullable=False),
        sa.Column("channel_id", sa.Text(), nullable=False),
        sa.Column("thread_ts", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("ts", sa.Text(), nullable=False),  # the question's message: kept once
        sa.Column("asked_at", sa.Float(), nullable=False),
    )
    op.create_index(
        "kept_questions_message",
        "kept_questions",
        ["team_id", "channel_id", "thread_ts", "ts"],
        unique=True,
    )
    op.add_column("claims", sa.Column("holder", sa.Text(), nullable=False, server_default=""))
    op.create_index("claims_age", "claims", ["claimed_at"])
    op.create_table(
        "pacing",
        sa.Column("team_id", sa.Text(), primary_key=True),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("refilled_at", sa.Float(), nullable=False),
    )
    op.add_column("conversations", sa.Column("applied", sa.Text()))
    op.add_column("conversations", sa.Column("owed", sa.Text()))
    op.add_column(
        "conversations",
        sa.Column("queued_at", sa.Float(), nullable=False, server_default="0"),
    )
    op.add_column(
        "conversations",
        sa.Column("not_before", sa.Float(), nullable=False, server_default="0"),
    )
