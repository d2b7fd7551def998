"""The live progress message of one research run: created once, edited in place no more
often than the configured interval, paced per workspace, with the thread status kept fresh."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final

from bot.progress import ProgressTracker, ProgressView, Stage
from bot.sink import ThreadSink

logger = logging.getLogger(__name__)

# Slack clears a thread's status line after two minutes without a reply.
STATUS_REFRESH_SECONDS: Final = 90.0
# With nothing new to show, the elapsed time alone is refreshed this rarely.
IDLE_REFRESH_SECONDS: Final = 30.0
# Fifty runs ending together in one workspace all get their last edit within this time.
FINAL_EDIT_MAX_WAIT: Final = 90.0
# How long an edit waits in line for room in a busy workspace before the loop looks again
# (at the status line, say); the place in line is kept, as it is the time since the last edit.
EDIT_QUEUE_WAIT: Final = 15.0


class LiveProgress:
    """The live progress message: created once, edited no more often than `interval`."""

    def __init__(
        self,
        sink: ThreadSink,
        interval: float,
        clock: Callable[[], float],
        started: float,
        pace: Callable[[float, float], Awaitable[bool]],
    ) -> None:
        self.tracker = ProgressTracker()
        self._pace = pace
        self._sink = sink
        self._interval = interval
        self._clock = clock
        self._started = started
        self._ts: str | None = None
        self._last_edit = 0.0
        self._last_status = 0.0
        self._status_stage = self.tracker.stage

    async def start(self) -> str:
        await self._sink.set_status(self.tracker.stage)
        self._status_stage = self.tracker.stage
        self._last_status = self._clock()
        self._ts = await self._sink.show_progress(self._view(), None)
        self._last_edit = self._clock()
        return self._ts

    async def keep_live(self) -> None:
        while True:
            await asyncio.sleep(max(self._interval - (self._clock() - self._last_edit), 0.05))
            now = self._clock()
            if now - self._last_edit < self._interval:
                continue
            due = self.tracker.changed or now - self._last_edit >= IDLE_REFRESH_SECONDS
            # In a busy workspace this waits in line, longest unedited first; the edit then
            # shows the state of the moment it gets room.
            if due and await self._pace(EDIT_QUEUE_WAIT, now - self._last_edit):
                await self._edit()
            # The status line's loading messages follow the stage, and are refreshed before
            # Slack clears them.
            stage = self.tracker.stage
            if stage is not self._status_stage or now - self._last_status >= STATUS_REFRESH_SECONDS:
                self._last_status, self._status_stage = now, stage
                await self._sink.set_status(stage)

    async def finish(self, stage: Stage, *, wait: bool = True) -> None:
        self.tracker.end(stage)
        if self._ts is None:
            return
        # At once: Slack's Stop button goes when the run ends, not after the last edit.
        await self._sink.set_status(stage)
        # The last edit says how the run ended: worth waiting for room in the workspace, but
        # not for the interval, which spaces a live run's edits: a process stopped in the
        # meantime would leave a finished run showing Stop.
        await self._pace(FINAL_EDIT_MAX_WAIT if wait else 0, self._clock() - self._last_edit)
        await self._edit()

    async def _edit(self) -> None:
        try:
            await self._sink.show_progress(self._view(), self._ts)
        except Exception:  # a missed edit must never end the research run
            logger.warning("progress edit failed", exc_info=True)
        self._last_edit = self._clock()

    def _view(self) -> ProgressView:
        return self.tracker.view(self._clock() - self._started)
