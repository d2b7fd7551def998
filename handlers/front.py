"""The acknowledgement front: Slack's requests are read, checked and acknowledged on a thread
and event loop of their own, one that never reads a model stream.

Why: one event loop reads every research stream. With hundreds open, each of its turns takes
milliseconds, and an acknowledgement that needed a dozen turns (the request, Bolt, the inbox
write's round trips to the database's thread) was as late as that loop was busy: 0.8-1.9 s
at 400 streams (issue 13, bench/ack_latency.py). On the front's loop an event that causes
work is recorded in the inbox (on a database connection of the front's own) and acknowledged
at once; its handling is then handed to the main loop, exactly as a replay from the inbox is.

Every other request (slash commands, buttons, modals, the install pages, readiness) is still
answered by Bolt on the main loop, the front waiting for the answer: those listeners use the
main loop's clients and state, and their acknowledgements carry what the listener decides.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Final, TypeVar

from bot.ports import Inbox
from handlers.events import IGNORED, WorkEvent, work_event

logger = logging.getLogger(__name__)

T = TypeVar("T")

STOP_SECONDS: Final = 5.0


class Loop:
    """Another thread's event loop, seen from this one: run a coroutine there and await its
    result here, or start one there and move on."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if _running_loop() is self.loop:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def spawn(self, coro: Coroutine[Any, Any, None], what: str) -> None:
        """Start `coro` there; its failure is logged (there is nobody to tell)."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)

        def logged(done: concurrent.futures.Future[None]) -> None:
            if done.cancelled():
                return
            error = done.exception()
            if error is not None:
                logger.error("%s failed", what, exc_info=error)

        future.add_done_callback(logged)


class FrontThread:
    """The thread the transports run on, with its event loop."""

    def __init__(self, name: str = "slack-front") -> None:
        self._name = name
        self._thread: threading.Thread | None = None
        self._loop: Loop | None = None

    @property
    def started(self) -> bool:
        return self._thread is not None

    @property
    def loop(self) -> Loop:
        if self._loop is None:
            raise RuntimeError("the front thread has not started")
        return self._loop

    async def start(self) -> None:
        started: concurrent.futures.Future[asyncio.AbstractEventLoop] = concurrent.futures.Future()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            started.set_result(loop)
            try:
                loop.run_forever()
            finally:
                _close(loop)

        self._thread = threading.Thread(target=serve, name=self._name, daemon=True)
        self._thread.start()
        self._loop = Loop(await asyncio.wrap_future(started))

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the front's loop and return its result here."""
        return await self.loop.run(coro)

    async def stop(self) -> None:
        """Stop the loop (what runs on it was closed before) and wait for the thread."""
        if self._thread is None or self._loop is None:
            return
        self._loop.loop.call_soon_threadsafe(self._loop.loop.stop)
        await asyncio.to_thread(self._thread.join, STOP_SECONDS)
        if self._thread.is_alive():
            logger.warning("the Slack front's thread did not stop within %.0f s", STOP_SECONDS)
        self._thread = None
        self._loop = None


def _close(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is left on the loop, let it unwind, close the loop."""
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        with contextlib.suppress(Exception):
            loop.run_until_complete(asyncio.wait(tasks, timeout=STOP_SECONDS))
    with contextlib.suppress(Exception):
        loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class EventIntake:
    """Events that cause work, on the front: recorded in the inbox, acknowledged, and handed
    to the main loop's listeners. Redeliveries are known by what was recorded."""

    def __init__(
        self,
        inbox: Inbox,
        process_id: str,
        main: Loop,
        handle: Callable[[dict[str, Any]], Coroutine[Any, Any, None]],
    ) -> None:
        self._inbox = inbox
        self._process_id = process_id
        self._main = main
        self._handle = handle
        self._recent = RecentIds()  # recorded by this process: spares the database

    async def take(self, body: Mapping[str, Any], retry: object = None) -> bool:
        """True when the event is acknowledged here (recorded now, recorded before, or not
        work); False when Bolt must answer the request (on the main loop)."""
        target = work_event(body)
        if not isinstance(target, WorkEvent):
            return target == IGNORED
        team, event_id = target.team_id, target.event_id
        seen = f"{team}:{event_id}"
        if self._recent.seen(seen):
            logger.info("ignoring event %s seen before", event_id)
            return True
        accepted = await self._inbox.accept(
            team, event_id, json.dumps(body, ensure_ascii=False), self._process_id
        )
        self._recent.add(seen)
        if not accepted:
            logger.info("ignoring event %s recorded before (retry %s)", event_id, retry)
            return True
        self._main.spawn(self._handle(dict(body)), f"handling event {event_id}")
        return True


class RecentIds:
    """The last `size` ids recorded by this process, in memory."""

    def __init__(self, size: int = 10_000) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._size = size

    def seen(self, value: str) -> bool:
        return value in self._seen

    def add(self, value: str) -> None:
        self._seen[value] = None
        if len(self._seen) > self._size:
            self._seen.popitem(last=False)
