"""Per-workspace pacing of message edits, so many runs in one workspace stay under Slack's
rate tier for chat.update (Tier 3: about 50 per minute per workspace)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final, Protocol

DEFAULT_EDITS_PER_MINUTE: Final = 45.0  # a margin under Tier 3's 50
DEFAULT_BURST: Final = 5.0


class PacingBuckets(Protocol):
    """Token buckets kept where every process of the fleet sees them."""

    async def take(self, team_id: str, *, rate: float, burst: float, now: float) -> bool:
        """Refill the workspace's bucket at `rate` per second up to `burst`, then take one
        token if there is one; False (nothing taken) if not. Atomic across processes."""
        ...


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

    def try_acquire(self, team_id: str) -> bool:
        """Take one edit now if the workspace has room; never waits."""
        now = self._clock()
        tokens, last = self._buckets.get(team_id, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        if tokens >= 1.0:
            self._buckets[team_id] = (tokens - 1.0, now)
            return True
        self._buckets[team_id] = (tokens, now)
        return False

    async def acquire(self, team_id: str, max_wait: float) -> bool:
        """Take one edit, waiting up to `max_wait` seconds for room."""
        deadline = self._clock() + max_wait
        while not self.try_acquire(team_id):
            remaining = deadline - self._clock()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(remaining, 1.0 / self._rate if self._rate else remaining, 1.0))
        return True


class SharedPacer(WorkspacePacer):
    """The same buckets shared by every process of a fleet (PostgreSQL), so the fleet as a
    whole stays inside the workspace's tier, not each process."""

    def __init__(
        self,
        buckets: PacingBuckets,
        per_minute: float = DEFAULT_EDITS_PER_MINUTE,
        burst: float = DEFAULT_BURST,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(per_minute, burst, clock)
        self._shared = buckets

    async def acquire(self, team_id: str, max_wait: float) -> bool:
        deadline = self._clock() + max_wait
        while not await self._shared.take(
            team_id, rate=self._rate, burst=self._burst, now=self._clock()
        ):
            remaining = deadline - self._clock()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(remaining, 1.0 / self._rate if self._rate else remaining, 1.0))
        return True
