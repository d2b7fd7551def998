"""Work started in the background and kept track of, so a shutdown can wait for it or cancel
it, and so its failures reach the log with their traceback instead of vanishing."""

from __future__ import annotations

import asyncio
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

    task = asyncio.create_task(guarded(), name=name)
    tasks.add(task)
    task.add_done_callback(tasks.discard)
