"""A research conversation: its identity, its state machine and what is stored of it.

The domain owns these types; storage implements the repositories in bot/ports.py for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final

from bot.research_options import ResearchOptions


class State(StrEnum):
    AWAITING_CLARIFICATION = "awaiting_clarification"
    QUEUED = "queued"  # research waits for a free slot (USER_/WORKSPACE_MAX_RUNNING)
    RESEARCHING = "researching"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


_RESTARTABLE: Final = frozenset(
    {State.AWAITING_CLARIFICATION, State.QUEUED, State.FAILED, State.INTERRUPTED}
)

# Every state change a conversation may make, in one place; Conversation.to() checks it.
TRANSITIONS: Final[MappingProxyType[State, frozenset[State]]] = MappingProxyType(
    {
        # The clarifying question was asked (a draft becomes this state when it is first
        # stored); the answer starts research; asking failed or was cut by a shutdown.
        State.AWAITING_CLARIFICATION: frozenset(
            {State.AWAITING_CLARIFICATION, State.QUEUED, State.FAILED, State.INTERRUPTED}
        ),
        # Research starts only from the queue: admitted when a slot is free (or ended by Stop).
        State.QUEUED: frozenset({State.RESEARCHING, State.CANCELLED, State.FAILED}),
        # Throttled by Model Studio before any output: back in the queue.
        State.RESEARCHING: frozenset(
            {State.DONE, State.FAILED, State.CANCELLED, State.INTERRUPTED, State.QUEUED}
        ),
        State.DONE: frozenset({State.QUEUED}),  # "Research this deeper"
        # Retry re-runs the step that did not finish: the clarifying question or research.
        State.FAILED: _RESTARTABLE,
        State.CANCELLED: _RESTARTABLE,
        State.INTERRUPTED: _RESTARTABLE,
    }
)


MAX_APPLIED: Final = 20


class InvalidTransition(RuntimeError):
    """A bug: code asked for a state change the table above does not allow."""


class StaleConversation(RuntimeError):
    """Someone else saved the conversation since it was read; its change was not written."""


@dataclass(frozen=True, slots=True)
class ConversationKey:
    """A conversation is its Slack thread; the team is part of every lookup."""

    team_id: str
    channel_id: str
    thread_ts: str

    @property
    def label(self) -> str:
        """How log lines name the conversation: team/channel/thread."""
        return f"{self.team_id}/{self.channel_id}/{self.thread_ts}"


QUESTION: Final = "question"
REPORT: Final = "report"


@dataclass(frozen=True, slots=True)
class Owed:
    """What the thread is owed and Slack has not yet accepted: the clarifying question (the
    last assistant turn of the history) or the report (with its footer figures)."""

    kind: str  # QUESTION | REPORT
    marker: str  # names the posts in the thread, so a redelivery can see what arrived
    attempts: int = 0
    stats: dict[str, Any] = field(default_factory=dict)
    # The report's canvas, once Slack made it: a redelivery links it instead of making a
    # second one (a canvas is not a post in the thread, so `delivered` cannot see it).
    canvas: str = ""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind,
            "marker": self.marker,
            "attempts": self.attempts,
            "stats": self.stats,
        }
        if self.canvas:
            data["canvas"] = self.canvas
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Owed:
        return cls(
            kind=str(data.get("kind", "")),
            marker=str(data.get("marker", "")),
            attempts=int(data.get("attempts", 0)),
            stats=dict(data.get("stats") or {}),
            canvas=str(data.get("canvas") or ""),
        )


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
    options: ResearchOptions = field(default_factory=ResearchOptions)
    created_at: float = 0.0
    updated_at: float = 0.0
    # Bumped by every save; a save based on an older version is refused (StaleConversation).
    version: int = 0
    owner: str | None = None  # the process streaming its research, while one does
    resumes: int = 0  # automatic restarts of its research after an interruption
    # The Slack messages (ts) applied to it, the most recent few: an event handled again
    # after a crash finds its message here and changes nothing.
    applied: tuple[str, ...] = ()
    queued_at: float = 0.0  # when it joined the research queue (the queue is oldest first)
    not_before: float = 0.0  # a throttled run waits in the queue until then
    owed: Owed | None = None  # a delivery to the thread not yet confirmed by Slack

    def handled(self, ts: str) -> bool:
        return bool(ts) and ts in self.applied

    def applying(self, ts: str) -> tuple[str, ...]:
        """`applied` with message `ts` added."""
        return (*self.applied, ts)[-MAX_APPLIED:] if ts else self.applied

    def to(self, state: State, **changes: Any) -> Conversation:
        """This conversation in `state`, with `changes`; only moves TRANSITIONS allows."""
        if state not in TRANSITIONS[self.state]:
            raise InvalidTransition(f"{self.state} -> {state} for {self.key}")
        return replace(self, state=state, **changes)

    @property
    def topic(self) -> str:
        """The first request's text (image parts left out)."""
        first = self.history[0]["content"] if self.history else ""
        if isinstance(first, list):
            return " ".join(str(p.get("text", "")) for p in first if isinstance(p, dict))
        return str(first)
