"""How domain code talks to a Slack thread without knowing it is Slack."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from bot.conversation import ConversationKey
from bot.progress import ProgressView
from bot.report import Report


class ThreadSink(Protocol):
    """One conversation's thread. Methods raise only when the post itself failed."""

    async def post_markdown(self, text: str) -> str:
        """Post model-written Markdown (a clarifying question, an answer); returns its ts."""
        ...

    async def post_notice(self, sentence: str, *, retry: bool = False) -> None:
        """A short plain sentence; `retry` offers a button that re-runs the last step."""
        ...

    async def show_progress(self, view: ProgressView, message_ts: str | None) -> str:
        """Create (ts None) or edit the live progress message; returns its ts."""
        ...

    async def set_status(self, status: str) -> None:
        """The thread's status line; best effort, never raises."""
        ...

    async def deliver_report(self, report: Report) -> None:
        """Upload the report document and post its summary."""
        ...


SinkFactory = Callable[[ConversationKey], ThreadSink]
