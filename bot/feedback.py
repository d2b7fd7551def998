"""Feedback on what the bot wrote: Slack's 👍/👎 buttons on report summaries and answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

REPORT: Final = "report"  # answers use their own kinds (records.ASK, records.FOLLOW_UP)


@dataclass(frozen=True, slots=True)
class Feedback:
    """One person's rating of one message; a later press replaces it."""

    team_id: str
    channel_id: str
    message_ts: str
    user_id: str
    positive: bool
    model: str
    kind: str


@dataclass(frozen=True, slots=True)
class FeedbackShare:
    """The ratings of one model and kind in a period."""

    model: str
    kind: str
    positive: int
    total: int

    @property
    def percent_positive(self) -> int:
        return round(100 * self.positive / self.total) if self.total else 0
