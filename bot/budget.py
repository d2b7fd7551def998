"""The optional monthly token budget of a workspace, counted per calendar month in UTC."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.ports import UsageLedger


def month_start(now: float) -> datetime:
    moment = datetime.fromtimestamp(now, UTC)
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month_start(now: float) -> datetime:
    start = month_start(now)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


def month_name(moment: datetime) -> str:
    return f"{moment:%B} {moment.year}"


def reset_time(moment: datetime) -> str:
    return f"{moment.day} {moment:%B} {moment.year} at 00:00 UTC"


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
    ) -> None:
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

    async def refusal(self, team_id: str) -> str | None:
        """The sentence to show instead of starting new work, or None when work may start.

        Work already running is never stopped by this: callers ask only before starting.
        """
        status = await self.status(team_id)
        if status is None or not status.exhausted:
            return None
        return (
            f"This workspace has used {status.used:,} of its {status.limit:,} tokens for "
            f"{month_name(status.month)}, so I can't start new research or answers until the "
            f"budget resets on {reset_time(status.resets_at)}. The bot's admin can raise "
            "WORKSPACE_MONTHLY_TOKEN_BUDGET."
        )
