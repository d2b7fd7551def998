"""Typed events the rest of the bot sees instead of raw DashScope frames."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

# Deep-research phases as they appear on the wire.
ANSWER: Final = "answer"
PLANNING: Final = "ResearchPlanning"
WEB_RESEARCH: Final = "WebResearch"
KEEPALIVE: Final = "KeepAlive"

# Statuses (the stream may carry others; unknown ones pass through as PhaseStatus).
TYPING: Final = "typing"
FINISHED: Final = "finished"
ROUND_FINISHED: Final = "WebResultFinished"

# The largest count an event carries. A real call uses at most about a million tokens, so a
# figure beyond this is corrupt; it is also the most the ledger's INTEGER columns hold on
# PostgreSQL (and far below SQLite's 2**63, so sums never overflow).
MAX_COUNT: Final = 2**31 - 1


@dataclass(frozen=True, slots=True)
class PhaseStatus:
    """A non-KeepAlive frame's phase and status (every frame yields one)."""

    phase: str
    status: str


@dataclass(frozen=True, slots=True)
class TextDelta:
    """New text of a phase: the plan, the clarifying question or the report."""

    phase: str
    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """New reasoning text from a thinking model."""

    text: str


@dataclass(frozen=True, slots=True)
class ResearchGoal:
    round_id: int
    goal: str


@dataclass(frozen=True, slots=True)
class WebSite:
    title: str
    url: str
    description: str = ""


@dataclass(frozen=True, slots=True)
class SitesFound:
    round_id: int
    sites: tuple[WebSite, ...]


@dataclass(frozen=True, slots=True)
class RoundFinished:
    round_id: int


@dataclass(frozen=True, slots=True)
class Reference:
    index: int
    title: str
    url: str
    description: str = ""


@dataclass(frozen=True, slots=True)
class References:
    items: tuple[Reference, ...]


@dataclass(frozen=True, slots=True)
class Usage:
    """Cumulative token counts so far; the last one seen is the call's total. The client
    emits the highest figures seen in the stream, field by field, so they never go down."""

    input_tokens: int
    output_tokens: int
    reasoning_tokens: int = 0
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class StreamError:
    code: str
    message: str = field(repr=False)  # the service's text: for logs, never for users
    request_id: str = ""
    status: int = 0


@dataclass(frozen=True, slots=True)
class Finished:
    """The call ended normally (answer phase finished, or finish_reason stop)."""

    phase: str


@dataclass(frozen=True, slots=True)
class StillAlive:
    """A frame arrived that carries nothing to show (KeepAlive, metadata only)."""


STILL_ALIVE: Final = StillAlive()


Event = (
    PhaseStatus
    | TextDelta
    | ReasoningDelta
    | ResearchGoal
    | SitesFound
    | RoundFinished
    | References
    | Usage
    | StreamError
    | Finished
    | StillAlive
)
