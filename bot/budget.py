"""The optional monthly token budget of a workspace, counted per calendar month in UTC."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from bot.i18n import N_, Day, Month, Sentence, Text, say
from bot.ports import UsageLedger

# Tokens a call is expected to use, held against the budget until its real usage is known.
ESTIMATED_TOKENS: Final = {"clarify": 2_000, "research": 60_000, "answer": 8_000}
HELD: Final = N_(
    "This workspace's monthly token budget is taken up by research and answers still running, "
    "so I can't start more right now. Please try again when they have finished."
)
EXHAUSTED: Final = N_(
    "This workspace has used {used} of its {limit} tokens for {month}, so I can't start new "
    "research or answers until the budget resets on {day} at 00:00 UTC. The bot's admin can "
    "raise WORKSPACE_MONTHLY_TOKEN_BUDGET."
)


def month_start(now: float) -> datetime:
    moment = datetime.fromtimestamp(now, UTC)
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month_start(now: float) -> datetime:
    start = month_start(now)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    limit: int
    used: int  # input plus output tokens this month (reasoning is part of output)
    month: datetime  # the first moment of the month counted
    resets_at: datetime

    @property
    def exhausted(self) -> bool:
        return self.used >= self.limit


class BudgetGuard:
    def __init__(
        self,
        usage: UsageLedger,
        monthly_tokens: int | None,
        *,
        clock: Callable[[], float] = time.time,
        gate: Callable[[str], Awaitable[Text | None]] | None = None,
    ) -> None:
        # Asked first: a workspace that may not call the model at all (no Model Studio key)
        # is told that, whatever its budget.
        self._gate = gate
        self._usage = usage
        self._limit = monthly_tokens
        self._clock = clock

    async def status(self, team_id: str) -> BudgetStatus | None:
        """Where the workspace stands this month; None when no budget is set."""
        if self._limit is None:
            return None
        now = self._clock()
        start = month_start(now)
        used = await self._usage.tokens(team_id, since=start.timestamp())
        return BudgetStatus(self._limit, used, start, next_month_start(now))

    @property
    def limit(self) -> int | None:
        return self._limit

    def since(self) -> float:
        """Where the month counted now starts."""
        return month_start(self._clock()).timestamp()

    async def refusal_held(self, team_id: str) -> Text:
        """The sentence when a call's reservation was refused: the budget is used up, or
        held by work still running."""
        return await self.refusal(team_id) or HELD

    async def refusal(self, team_id: str) -> Text | None:
        """The sentence to show instead of starting new work, or None when work may start.

        Work already running is never stopped by this: callers ask only before starting.
        """
        if self._gate is not None and (refused := await self._gate(team_id)) is not None:
            return refused
        status = await self.status(team_id)
        if status is None or not status.exhausted:
            return None
        return exhausted(status)


def exhausted(status: BudgetStatus) -> Sentence:
    return say(
        EXHAUSTED,
        used=status.used,
        limit=status.limit,
        month=Month(status.month),
        day=Day(status.resets_at),
    )
