"""Work started in the background and kept track of, so a shutdown can wait for it or cancel
it, and so its failures reach the log with their traceback instead of vanishing."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable

logger = logging.getLogger(__name__)


def spawn(tasks: set[asyncio.Task[None]], work: Awaitable[None], name: str) -> None:
    """Run `work` as a task kept in `tasks` until it ends; a failure is logged, not raised."""

    async def guarded() -> None:
        try:
            await work
        except Exception:
            logger.exception("%s failed", name)

    def done(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        if task.cancelled() and inspect.iscoroutine(work):
            # Cancelled before it ever ran (a shutdown right after the spawn): close the work
            # it was given, which would otherwise warn that it was never awaited.
            work.close()

    task = asyncio.create_task(guarded(), name=name)
    tasks.add(task)
    task.add_done_callback(done)
