"""Plain records that storage reads and writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class State(StrEnum):
    AWAITING_CLARIFICATION = "awaiting_clarification"
    RESEARCHING = "researching"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True, slots=True)
class ConversationKey:
    """A conversation is its Slack thread; the team is part of every lookup."""

    team_id: str
    channel_id: str
    thread_ts: str


@dataclass(frozen=True, slots=True)
class Conversation:
    key: ConversationKey
    user_id: str
    state: State
    model: str
    history: tuple[dict[str, Any], ...] = ()
    report: str | None = None
    references: tuple[dict[str, Any], ...] = ()
    progress_ts: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(frozen=True, slots=True)
class UsageRecord:
    team_id: str
    user_id: str
    channel_id: str
    thread_ts: str
    model: str
    kind: str
    input_tokens: int
    output_tokens: int
    reasoning_tokens: int = 0
    request_id: str = ""
    cost_usd: float | None = None
    created_at: float = field(default=0.0)
