"""The tables as the latest migration leaves them; queries are built from these.

Change a table only together with a migration in storage/migrations/versions/.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

from sqlalchemy import BigInteger, Column, Float, Integer, MetaData, Table, Text

metadata = MetaData()

conversations = Table(
    "conversations",
    metadata,
    Column("team_id", Text, primary_key=True),
    Column("channel_id", Text, primary_key=True),
    Column("thread_ts", Text, primary_key=True),
    Column("user_id", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("model", Text, nullable=False),
    Column("history", Text, nullable=False),  # JSON list of {"role", "content"} for the model
    Column("report", Text),  # the last report, as the model wrote it
    Column("refs", Text, nullable=False),  # JSON list of {"index", "title", "url"}
    Column("progress_ts", Text),  # the live progress message, while one exists
    Column("options", Text, nullable=False),  # JSON of the research options
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("version", Integer, nullable=False),
    Column("owner", Text),  # the process streaming its research, while one does
    Column("resumes", Integer, nullable=False),  # automatic restarts after interruptions
    Column("applied", Text),  # JSON list of the message ts applied to it, the last few
    Column("owed", Text),  # JSON of what the thread is owed and Slack has not yet accepted
    Column("queued_at", Float, nullable=False),  # when it joined the research queue
    Column("not_before", Float, nullable=False),  # a throttled run waits until then
)

usage = Table(
    "usage",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("team_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("channel_id", Text, nullable=False),
    Column("thread_ts", Text, nullable=False),
    Column("model", Text, nullable=False),
    Column("kind", Text, nullable=False),  # clarify | research | answer
    Column("input_tokens", Integer, nullable=False),
    Column("output_tokens", Integer, nullable=False),
    Column("reasoning_tokens", Integer, nullable=False),
    Column("request_id", Text, nullable=False),
    Column("cost_nanousd", BigInteger),  # NULL when the model has no known price
    Column("created_at", Float, nullable=False),
    Column("call_id", Text, unique=True),  # each model call is recorded once
)

claims = Table(
    "claims",
    metadata,
    Column("key", Text, primary_key=True),
    Column("claimed_at", Float, nullable=False),
    Column("holder", Text, nullable=False),  # the event that claimed it
)

answers = Table(
    "answers",
    metadata,
    Column("id", Text, primary_key=True),
    Column("team_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("channel_id", Text, nullable=False),
    Column("thread_ts", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("model", Text, nullable=False),
    Column("question", Text, nullable=False),
    Column("answer", Text, nullable=False),
    Column("reasoning", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

workspace_settings = Table(
    "workspace_settings",
    metadata,
    Column("team_id", Text, primary_key=True),
    Column("model", Text),  # NULL: the bot's RESEARCH_MODEL
    Column("output_format", Text),  # NULL: the model's default
    Column("clarify", Integer),  # 1 / 0; NULL: ask
    Column("mcp_label", Text, nullable=False),  # "": no MCP server
    Column("mcp_url", Text, nullable=False),
    Column("mcp_allowed_tools", Text, nullable=False),  # JSON list of tool names
    Column("mcp_token_sealed", Text),  # encrypted bearer token, never plaintext
    Column("report_delivery", Text),  # canvas_and_file / canvas / file; NULL: canvas_and_file
    Column("updated_by", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

feedback = Table(
    "feedback",
    metadata,
    Column("team_id", Text, primary_key=True),
    Column("channel_id", Text, primary_key=True),
    Column("message_ts", Text, primary_key=True),  # the message carrying the buttons
    Column("user_id", Text, primary_key=True),
    Column("positive", Integer, nullable=False),  # 1 👍, 0 👎; a second press replaces it
    Column("model", Text, nullable=False),
    Column("kind", Text, nullable=False),  # report, answer, follow_up
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

inbox = Table(
    "inbox",
    metadata,
    Column("team_id", Text, primary_key=True),
    Column("event_id", Text, primary_key=True),
    Column("body", Text, nullable=False),  # the event_callback as Slack sent it (JSON)
    Column("owner", Text, nullable=False),  # the process handling it
    Column("received_at", Float, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("done_at", Float),  # NULL until handled
)

processes = Table(
    "processes",
    metadata,
    Column("id", Text, primary_key=True),
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    Column("draining", Integer, nullable=False),
)

inflight_usage = Table(
    "inflight_usage",
    metadata,
    Column("call_id", Text, primary_key=True),
    Column("owner", Text, nullable=False),
    Column("team_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("channel_id", Text, nullable=False),
    Column("thread_ts", Text, nullable=False),
    Column("model", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("input_tokens", Integer, nullable=False),
    Column("output_tokens", Integer, nullable=False),
    Column("reasoning_tokens", Integer, nullable=False),
    Column("request_id", Text, nullable=False),
    Column("cost_nanousd", BigInteger),
    Column("reserved_tokens", Integer, nullable=False),  # counted against the budget
    Column("updated_at", Float, nullable=False),
)

kept_questions = Table(
    "kept_questions",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("team_id", Text, nullable=False),
    Column("channel_id", Text, nullable=False),
    Column("thread_ts", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("ts", Text, nullable=False),
    Column("asked_at", Float, nullable=False),
)

pacing = Table(
    "pacing",
    metadata,
    Column("team_id", Text, primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("refilled_at", Float, nullable=False),
)

# slack_installations, slack_bots and slack_oauth_states (migration 0004) are slack_sdk's own
# tables, read and written only by its stores (handlers/installations.py).

workspaces = Table(
    "workspaces",
    metadata,
    Column("team_id", Text, primary_key=True),
    Column("enterprise_id", Text),  # the org of an Enterprise Grid workspace
    Column("enterprise_install", Integer, nullable=False),  # 1: the org-wide install serves it
    Column("name", Text, nullable=False),
    Column("installed_at", Float, nullable=False),
    Column("uninstalled_at", Float),  # NULL while installed
    Column("purge_at", Float),  # when its content is deleted after an uninstall
)

workspace_keys = Table(
    "workspace_keys",
    metadata,
    Column("team_id", Text, primary_key=True),
    Column("key_sealed", Text, nullable=False),  # the Model Studio key, encrypted
    Column("updated_by", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

NANOS_PER_USD: Final = Decimal(1_000_000_000)


def to_nanos(usd: Decimal | None) -> int | None:
    return None if usd is None else int((usd * NANOS_PER_USD).to_integral_value())


def from_nanos(nanos: int | Decimal | None) -> Decimal | None:
    return None if nanos is None else Decimal(int(nanos)) / NANOS_PER_USD
