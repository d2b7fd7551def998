"""Per-workspace pacing of message edits, so many runs in one workspace stay under Slack's
rate tier for chat.update (Tier 3: about 50 per minute per workspace).

When runs wait for room, the one whose message went longest without an edit goes first: with
fifty runs in one workspace, first come, first served let the same quick askers take every
edit while others showed nothing until their end."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

DEFAULT_EDITS_PER_MINUTE: Final = 45.0  # a margin under Tier 3's 50
DEFAULT_BURST: Final = 5.0


class PacingBuckets(Protocol):
    """Token buckets kept where every process of the fleet sees them."""

    async def take(self, team_id: str, *, rate: float, burst: float, now: float) -> bool:
        """Refill the workspace's bucket at `rate` per second up to `burst`, then take one
        token if there is one; False (nothing taken) if not. Atomic across processes."""
        ...


@dataclass(eq=False)
class _Waiter:
    # Set when the waiter ahead of it leaves: only the head of the line looks at the bucket,
    # the others sleep until then (hundreds of runs in a workspace must not poll).
    ahead_left: asyncio.Event = field(default_factory=asyncio.Event)


_Place = tuple[float, int, _Waiter]
"""A waiter's place in line: (its last edit in the pacer's clock, the smallest first; the
order it came in). A plain tuple: the heap and the removal compare in C; with a dataclass's
generated comparisons, 400 runs ending at once spent milliseconds per turn of the event loop
in them (bench/ack_latency.py, loop stalls)."""


class WorkspacePacer:
    """A token bucket per workspace, in this process (SQLite: the only process)."""

    def __init__(
        self,
        per_minute: float = DEFAULT_EDITS_PER_MINUTE,
        burst: float = DEFAULT_BURST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate = per_minute / 60.0
        self._burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # team -> (tokens, last refill)
        self._queues: dict[str, list[_Place]] = {}  # team -> heap of runs waiting for room
        self._seq = itertools.count()

    def try_acquire(self, team_id: str) -> bool:
        """Take one edit now if the workspace has room; never waits, never queues."""
        now = self._clock()
        tokens, last = self._buckets.get(team_id, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        if tokens >= 1.0:
            self._buckets[team_id] = (tokens - 1.0, now)
            return True
        self._buckets[team_id] = (tokens, now)
        return False

    async def acquire(self, team_id: str, max_wait: float, *, idle: float = 0.0) -> bool:
        """Take one edit, waiting up to `max_wait` seconds for room. `idle` is how long the
        caller's message has gone without an edit: of the runs waiting in a workspace, the
        longest idle is served first, and no run takes room ahead of one idle longer."""
        deadline = self._clock() + max_wait
        queue = self._queues.setdefault(team_id, [])
        me = _Waiter()
        place = (self._clock() - idle, next(self._seq), me)
        heapq.heappush(queue, place)
        try:
            while True:
                if queue[0] is place and await self._take(team_id):
                    return True
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return False
                if queue[0] is place:
                    await asyncio.sleep(max(0.0, min(remaining, self._room_in())))
                else:
                    me.ahead_left.clear()
                    # Not asyncio.wait_for: on Python 3.11 it can swallow the caller's
                    # cancellation when the wait ends at the same moment, and a run's live
                    # progress, cancelled as the run ended, then never ended (1 run in 50 in
                    # bench/progress_edits.py hung without its report).
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(remaining):
                            await me.ahead_left.wait()
        finally:
            was_head = queue[0] is place
            queue.remove(place)
            heapq.heapify(queue)
            if not queue:
                self._queues.pop(team_id, None)
            elif was_head:
                queue[0][2].ahead_left.set()

    async def _take(self, team_id: str) -> bool:
        return self.try_acquire(team_id)

    def _room_in(self) -> float:
        """How long until the bucket may have room again (at most a second)."""
        return min(1.0 / self._rate if self._rate else 1.0, 1.0)


class SharedPacer(WorkspacePacer):
    """The same buckets shared by every process of a fleet (PostgreSQL), so the fleet as a
    whole stays inside the workspace's tier, not each process. The longest-idle-first order
    holds among the runs of one process; processes take turns at the shared bucket."""

    def __init__(
        self,
        buckets: PacingBuckets,
        per_minute: float = DEFAULT_EDITS_PER_MINUTE,
        burst: float = DEFAULT_BURST,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(per_minute, burst, clock)
        self._shared = buckets

    async def _take(self, team_id: str) -> bool:
        return await self._shared.take(
            team_id, rate=self._rate, burst=self._burst, now=self._clock()
        )
