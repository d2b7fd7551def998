"""How domain code talks to a Slack thread without knowing it is Slack."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final, Protocol

from bot.conversation import ConversationKey
from bot.i18n import Text
from bot.progress import ProgressView, Stage
from bot.report import Delivery, Report


class ThreadSink(Protocol):
    """One conversation's thread. Methods raise only when the post itself failed."""

    async def post_markdown(self, text: str, *, marker: str = "") -> str:
        """Post model-written Markdown (a clarifying question, an answer); returns its ts.
        `marker` names the post, for `delivered`."""
        ...

    async def post_notice(self, sentence: Text, *, retry: bool = False) -> None:
        """A short plain sentence, in the thread's language; `retry` offers a button that
        re-runs the last step."""
        ...

    async def show_progress(self, view: ProgressView, message_ts: str | None) -> str:
        """Create (ts None) or edit the live progress message; returns its ts."""
        ...

    async def set_status(self, stage: Stage) -> None:
        """The thread's status line for `stage`: while research runs (STARTING to WRITING) it
        is also an agent session Slack can stop; an ending stage clears the line and ends the
        session. Best effort, never raises."""
        ...

    async def deliver_report(
        self,
        report: Report,
        *,
        skip: frozenset[str] = frozenset(),
        delivery: Delivery = Delivery.CANVAS_AND_FILE,
        canvas: str = "",
        keep_canvas: CanvasKeeper | None = None,
    ) -> None:
        """Make the report a canvas and upload the report document (FILE), as `delivery`
        says, then post its summary (SUMMARY, linking the canvas), each unless in `skip`. A
        canvas Slack will not make is replaced by the file, and not mentioned. `canvas`: the
        id of the canvas an earlier try made, linked instead of making another; a new one's id
        goes to `keep_canvas` before anything else is posted. Raises DeliveryFailed naming
        the part that failed."""
        ...

    async def delivered(self, marker: str) -> frozenset[str]:
        """Which posts named `marker` are in the thread: MESSAGE (a marked post), FILE (a
        report file whose name carries the marker), SUMMARY (a marked report summary)."""
        ...


SinkFactory = Callable[[ConversationKey], ThreadSink]

CanvasKeeper = Callable[[str], Awaitable[None]]
"""Records, durably, the id of the canvas a delivery just made."""

MESSAGE: Final = "message"
FILE: Final = "file"
SUMMARY: Final = "summary"


class DeliveryFailed(Exception):
    """Slack did not take a part of a delivery. `lasting`: it will not take it on a second try
    either (a missing permission, the bot not in the channel), so the bot's admin must act."""

    def __init__(self, part: str, *, lasting: bool) -> None:
        super().__init__(part)
        self.part = part
        self.lasting = lasting
