"""Leases on work, so that nothing accepted is lost when a process dies.

Every process renews a heartbeat; the work it owns (inbox events, research runs, the usage of
calls still streaming) is leased through it. Each tick, a process flushes the usage of its
streaming calls and sweeps for work whose owner's heartbeat is older than the lease: it
records the cut calls' usage, handles the events again, and adopts the runs. On SQLite there is
only ever one process, so at start everything not its own is an orphan at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from bot.background import spawn
from bot.conversation import Conversation
from bot.metering import UsageMeter
from bot.ports import Conversations, Inbox, InflightUsage, OrphanEvent, Processes

logger = logging.getLogger(__name__)

# An event whose handling killed its process this many times is not handled again.
MAX_EVENT_ATTEMPTS: Final = 3
MIN_TICK_SECONDS: Final = 0.1
# How often local runs are checked against the database (Stop pressed on another process,
# run time limits): Stop takes effect within this.
WATCH_SECONDS: Final = 1.0


@dataclass(frozen=True, slots=True)
class LeaseConfig:
    process_id: str
    lease_seconds: float
    single_process: bool  # SQLite: no other process can be alive


class Supervisor:
    def __init__(
        self,
        *,
        processes: Processes,
        inbox: Inbox,
        inflight: InflightUsage,
        conversations: Conversations,
        meter: UsageMeter,
        config: LeaseConfig,
        replay: Callable[[OrphanEvent], Awaitable[None]],
        adopt_run: Callable[[Conversation], Awaitable[None]],
        deliver: Callable[[Conversation], Awaitable[None]] | None = None,
        watch_runs: Callable[[], Awaitable[None]] | None = None,
        give_up: Callable[[OrphanEvent], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._processes = processes
        self._inbox = inbox
        self._inflight = inflight
        self._conversations = conversations
        self._meter = meter
        self._config = config
        self._replay = replay
        self._adopt_run = adopt_run
        self._deliver = deliver
        self._watch_runs = watch_runs
        self._give_up = give_up
        self._clock = clock
        self._tasks: list[asyncio.Task[None]] = []
        self._work: set[asyncio.Task[None]] = set()
        self.draining = False

    @property
    def process_id(self) -> str:
        return self._config.process_id

    @property
    def tick_seconds(self) -> float:
        return max(MIN_TICK_SECONDS, self._config.lease_seconds / 3)

    async def start(self) -> None:
        """Announce this process, take over what dead ones left, then keep the lease."""
        await self._processes.beat(self.process_id)
        await self.sweep()
        self._tasks = [
            asyncio.create_task(self._every(self.tick_seconds, self.tick), name="supervisor"),
            asyncio.create_task(self._every(self.watch_seconds, self.watch), name="watch"),
        ]

    @property
    def watch_seconds(self) -> float:
        return min(WATCH_SECONDS, self.tick_seconds)

    async def _every(self, seconds: float, work: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await work()
            except Exception:
                logger.exception("%s failed; trying again in %.1f s", work.__name__, seconds)

    async def tick(self) -> None:
        await self._processes.beat(self.process_id, draining=self.draining)
        if not self.draining:
            await self.sweep()

    async def watch(self) -> None:
        # The usage of streaming calls, every second (one statement for all of them): money
        # spent before a crash is lost for at most this long.
        await self._inflight.flush(self.process_id, self._meter.take_changed())
        if self._watch_runs is not None:
            await self._watch_runs()

    async def live(self) -> list[str]:
        if self._config.single_process:
            return [self.process_id]
        return await self._processes.live(self._clock() - self._config.lease_seconds)

    async def sweep(self) -> None:
        live = await self.live()
        settled = await self._inflight.settle(live)
        if settled:
            logger.info("recorded the usage of %d model call(s) cut by a stopped process", settled)
        for event in await self._inbox.take_orphans(self.process_id, live):
            if event.attempts > MAX_EVENT_ATTEMPTS:
                logger.error(
                    "event %s of %s was cut %d times; not handling it again",
                    event.event_id,
                    event.team_id,
                    event.attempts - 1,
                )
                await self._inbox.done(event.team_id, event.event_id)
                if self._give_up is not None:
                    # Its person is told, rather than left waiting for an answer.
                    self._spawn(self._give_up(event), f"give up {event.event_id}")
                continue
            logger.info("handling event %s accepted by a stopped process", event.event_id)
            self._spawn(self._replay(event), f"replay {event.event_id}")
        for conversation in await self._conversations.take_orphan_runs(self.process_id, live):
            logger.info("adopting research run %s from a stopped process", conversation.key)
            self._spawn(self._adopt_run(conversation), f"adopt {conversation.key}")
        if self._deliver is not None:
            owed = await self._conversations.take_orphan_deliveries(self.process_id, live)
            for conversation in owed:
                logger.info("delivering what %s is owed", conversation.key)
                self._spawn(self._deliver(conversation), f"deliver {conversation.key}")

    def _spawn(self, work: Awaitable[None], name: str) -> None:
        spawn(self._work, work, name)

    async def stop(self) -> None:
        """Flush what is left of this process's usage and give up its lease at once, so a
        live process takes over its work without waiting for the lease to expire."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for task in self._work:
            task.cancel()
        if self._work:
            await asyncio.wait(self._work, timeout=5)
        try:
            await self._inflight.flush(self.process_id, self._meter.take_changed())
            await self._processes.leave(self.process_id)
        except Exception:
            # Best effort: a process that could not say goodbye is taken for dead once its
            # lease runs out, and its work is taken over then.
            logger.exception("could not hand over this process's work at once")
